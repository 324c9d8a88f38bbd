#!/usr/bin/env bash
# Installs what Cascade's tests and benchmarks talk to, on a bare Debian machine:
#   etcd, nginx, Prometheus, promtool, Alertmanager, amtool and mtail from Debian's packages;
#   kube-apiserver v1.37.2, built once from hack/kube-tools into .tools/bin;
#   VictoriaLogs (a Loki-protocol store), built once into .tools/bin.
# Safe to run again: it only does what is missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/bin"
mkdir -p "$tools"

log() { printf 'install-deps: %s\n' "$*" >&2; }

# command -> Debian package
declare -A packages=(
  [amtool]=prometheus-alertmanager
  [etcd]=etcd-server
  [mtail]=mtail
  [nginx]=nginx
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [promtool]=prometheus
)
missing=()
for cmd in "${!packages[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${packages[$cmd]}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      log "need root to apt-get install ${missing[*]}; run as root or install them yourself"; exit 1
    fi
  fi
  log "installing ${missing[*]} from Debian"
  # Keep package scripts from starting system services (nginx on :80,
  # Prometheus on :9090): tests start their own on loopback.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo -E apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$added_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

# kube-apiserver: rebuilt when the tools module's pins or the build flags change.
kube_version=v1.37.2
ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
stamp=$( (cat "$root/hack/kube-tools/go.mod" "$root/hack/kube-tools/go.sum"; echo "$ldflags") | sha256sum | cut -c1-16)
if [ ! -x "$tools/kube-apiserver" ] || [ "$(cat "$tools/kube-apiserver.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "building kube-apiserver $kube_version into .tools/bin (a few minutes on 2 cores, once)"
  start=$(date +%s)
  (cd "$root/hack/kube-tools" && go build -ldflags "$ldflags" -o "$tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  echo "$stamp" > "$tools/kube-apiserver.stamp"
  log "kube-apiserver built in $(( $(date +%s) - start ))s"
fi
"$tools/kube-apiserver" --version >&2

# VictoriaLogs: the Loki-protocol log store the Loki forwarding tests push to,
# built once into .tools/bin from the Go module proxy (pure Go, no cgo, so it
# needs no C compiler).
vl_version=v1.52.1
if [ ! -x "$tools/victoria-logs" ] || [ "$(cat "$tools/victoria-logs.version" 2>/dev/null)" != "$vl_version" ]; then
  log "building victoria-logs $vl_version into .tools/bin (about a minute, once)"
  start=$(date +%s)
  vl_work=$(mktemp -d)
  (cd "$vl_work" && CGO_ENABLED=0 GOBIN="$tools" go install "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$vl_version")
  rm -rf "$vl_work"
  echo "$vl_version" > "$tools/victoria-logs.version"
  log "victoria-logs built in $(( $(date +%s) - start ))s"
fi
