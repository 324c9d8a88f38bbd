#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 2m),
# one after another, and stops at the first finding. Usage: fuzz-all.sh [TIME]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-2m}
found=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    found=$((found + 1))
    echo "fuzz: $pkg $target for $fuzztime"
    go test -run '^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
echo "fuzz: $found targets ran for $fuzztime each without a finding"
