#!/usr/bin/env bash
# install-ksm.sh builds kube-state-metrics, the peer the exporter benchmark
# compares against, into .tools/bin from the Go module proxy.
#
# Why not `go install k8s.io/kube-state-metrics/v2@VERSION`: the proxy reachable
# here answers 403 for the module's version list, and `go install` asks for that
# list (to look up deprecations) before it builds, so it fails. Building the
# downloaded module in a writable copy uses only its own go.mod and go.sum,
# which it ships complete (no replace directives).
#
# v2.15.0 is the newest version this proxy serves and the checksum database
# knows (v2.16.0's go.mod is missing from the checksum database, v2.17.0 is
# refused). It takes about 1.5 minutes on 2 cores.
set -euo pipefail

VERSION="${KSM_VERSION:-v2.15.0}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="$ROOT/.tools/bin"
STAMP="$BIN/kube-state-metrics.version"

if [[ -x "$BIN/kube-state-metrics" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then
	echo "kube-state-metrics $VERSION already in $BIN"
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Download the module into the module cache (verified against the checksum
# database) and find where it was unpacked.
dir="$(cd "$work" && go mod download -json "k8s.io/kube-state-metrics/v2@$VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$dir" ]]; then
	echo "install-ksm: could not download k8s.io/kube-state-metrics/v2@$VERSION" >&2
	exit 1
fi

# The module cache is read-only; build from a copy.
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$BIN"
(cd "$work/src" && go build -o "$BIN/kube-state-metrics" .)
echo "$VERSION" >"$STAMP"
echo "kube-state-metrics $VERSION installed in $BIN"
