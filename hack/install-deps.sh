#!/usr/bin/env bash
# Installs what Cascade's tests and benchmarks talk to, on a bare Debian machine:
#   etcd, nginx, Prometheus, promtool, Alertmanager, amtool and mtail from Debian's packages;
#   podman with runc (the image's test runs it in a real container runtime), from Debian;
#   tmux (the demo's test plays it in a real terminal), from Debian;
#   kube-apiserver and kube-controller-manager v1.37.2, built once from
#   hack/kube-tools into .tools/bin;
#   VictoriaLogs (a Loki-protocol store), built once into .tools/bin;
#   Helm and go-jsonnet (the chart's and the mixin's tests), built once into .tools/bin;
#   Thanos, VictoriaMetrics and vmalert (the distributed engines), built once into .tools/bin.
# Safe to run again: it only does what is missing.
#
# Environment (for hack/install-deps_test.go, which runs this script against
# stand-in commands without touching the machine):
#   CASCADE_DEPS_STEPS    the steps to run, default "packages tools"
#   CASCADE_POLICY_RC_D   where the policy that keeps package scripts from
#                         starting services is written, default /usr/sbin/policy-rc.d
#   CASCADE_TOOLS_DIR     where tools are built, default .tools/bin
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${CASCADE_TOOLS_DIR:-$root/.tools/bin}
steps=" ${CASCADE_DEPS_STEPS:-packages tools} "
policy_rc_d=${CASCADE_POLICY_RC_D:-/usr/sbin/policy-rc.d}

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Debian packages the tests need. A package counts as present when dpkg says
# it is installed, whatever is on PATH: a command of the same name from
# somewhere else is not the version the tests were written against.
# runc beside podman: Debian's podman defaults to crun, which cannot start
# containers on some machines' cgroup layout; the tests ask for runc.
packages=(etcd-server mtail nginx podman prometheus prometheus-alertmanager runc tmux)

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# as_root runs a command as root: directly when we are root, through sudo
# when we are not. sudo -E keeps DEBIAN_FRONTEND.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo -E "$@"
  fi
}

install_packages() {
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script installs Debian packages; on another system install ${packages[*]} yourself"
  local missing=() p
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages present: ${packages[*]}"
    return
  fi
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    die "need root to apt-get install ${missing[*]}: run as root, install sudo, or install them yourself"
  fi
  log "installing ${missing[*]} from Debian"
  # Keep package scripts from starting system services (nginx on :80,
  # Prometheus on :9090): tests start their own on loopback.
  local added_policy=""
  if [ ! -e "$policy_rc_d" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy_rc_d" >/dev/null
    as_root chmod +x "$policy_rc_d"
    added_policy=1
    trap 'as_root rm -f "$policy_rc_d"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq || die "apt-get update failed"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  if [ -n "$added_policy" ]; then
    as_root rm -f "$policy_rc_d"
    trap - EXIT
  fi
  for p in "${missing[@]}"; do
    installed "$p" || die "$p is still not installed after apt-get install"
  done
  log "installed ${missing[*]}"
}

build_tools() {
  command -v go >/dev/null 2>&1 || die "go not found on PATH (Go 1.26 is needed; /usr/local/go/bin?)"
  mkdir -p "$tools"
  local start

  kube_tool kube-apiserver "a few minutes on 2 cores"
  # kube-controller-manager: the lab's node lifecycle controller.
  kube_tool kube-controller-manager "minutes; about 15 cold on 2 cores"

  # VictoriaLogs: the Loki-protocol log store the Loki forwarding tests push to,
  # built once into .tools/bin from the Go module proxy (pure Go, no cgo, so it
  # needs no C compiler).
  local vl_version=v1.52.1
  if [ ! -x "$tools/victoria-logs" ] || [ "$(cat "$tools/victoria-logs.version" 2>/dev/null)" != "$vl_version" ]; then
    log "building victoria-logs $vl_version into .tools/bin (about a minute, once)"
    start=$(date +%s)
    (cd "$tools" && CGO_ENABLED=0 GOBIN="$tools" go install "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$vl_version")
    echo "$vl_version" > "$tools/victoria-logs.version"
    log "victoria-logs built in $(( $(date +%s) - start ))s"
  fi
}

# kube_tool NAME HOW_LONG builds k8s.io/kubernetes/cmd/NAME at the version
# hack/kube-tools pins into .tools/bin, once, and again only when the
# modules that command is built from or the build flags change: its stamp
# is taken over those modules alone, so adding a command to the tools
# module rebuilds no other.
kube_version=v1.37.2
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
kube_tool() {
  local name=$1 how_long=$2 pkg=k8s.io/kubernetes/cmd/$1 deps stamp start
  deps=$(cd "$root/hack/kube-tools" && go list -deps -f '{{with .Module}}{{if .Replace}}{{.Replace.Path}}@{{.Replace.Version}}{{else}}{{.Path}}@{{.Version}}{{end}}{{end}}' "$pkg") ||
    die "go list $pkg failed: are hack/kube-tools/go.mod and go.sum complete?"
  stamp=$( (printf '%s\n' "$deps" | sort -u; echo "$kube_ldflags") | sha256sum | cut -c1-16)
  if [ ! -x "$tools/$name" ] || [ "$(cat "$tools/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building $name $kube_version into .tools/bin ($how_long, once)"
    start=$(date +%s)
    rm -f "$tools/$name.stamp"
    (cd "$root/hack/kube-tools" && go build -ldflags "$kube_ldflags" -o "$tools/$name" "$pkg") || die "go build $pkg failed"
    echo "$stamp" > "$tools/$name.stamp"
    log "$name built in $(( $(date +%s) - start ))s"
  fi
  "$tools/$name" --version >&2
}

# go_tool NAME PACKAGE VERSION installs PACKAGE@VERSION (pure Go, no cgo)
# into .tools/bin as NAME, once, and again only when VERSION changes.
go_tool() {
  local name=$1 pkg=$2 version=$3 start
  if [ -x "$tools/$name" ] && [ "$(cat "$tools/$name.version" 2>/dev/null)" = "$version" ]; then
    return
  fi
  log "building $name $version into .tools/bin (once)"
  start=$(date +%s)
  (cd "$tools" && CGO_ENABLED=0 GOBIN="$tools" go install "$pkg@$version") || die "go install $pkg@$version failed"
  echo "$version" > "$tools/$name.version"
  log "$name built in $(( $(date +%s) - start ))s"
}

# Helm renders and lints the chart in deploy/helm (about two minutes, once);
# go-jsonnet evaluates the mixin.
build_deploy_tools() {
  go_tool helm helm.sh/helm/v3/cmd/helm v3.22.0
  go_tool jsonnet github.com/google/go-jsonnet/cmd/jsonnet v0.22.0
}

# The distributed engines the rule files also run in (rules/distributed):
# VictoriaMetrics single-node and vmalert, pure Go; and Thanos, which
# `go install` refuses (its go.mod has replace directives) and which needs a
# newer Go than this module's: it is built in a throwaway module holding
# Thanos's own replace lines, with that Go release (the module proxy serves
# it) for this build alone. About 4 minutes on 2 cores, once.
#
# The build tags are the ones Thanos's releases are built with (its
# .promu.yml): without slicelabels its gRPC codec reads Prometheus's labels
# as the wrong type, and Receive panics on the first Store API call.
build_thanos() {
  local version=v0.42.5 toolchain=go1.26.10 tags=netgo,slicelabels start tmp gomod
  if [ -x "$tools/thanos" ] && [ "$(cat "$tools/thanos.version" 2>/dev/null)" = "$version $toolchain $tags" ]; then
    return
  fi
  log "building thanos $version with $toolchain into .tools/bin (about 4 minutes, once)"
  start=$(date +%s)
  tmp=$(mktemp -d)
  # Its go.mod, from the module cache: the JSON's "GoMod" field.
  if ! gomod=$(cd "$tmp" && GOTOOLCHAIN=$toolchain go mod download -json "github.com/thanos-io/thanos@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p') || [ -z "$gomod" ] || [ ! -f "$gomod" ]; then
    rm -rf "$tmp"
    die "go mod download github.com/thanos-io/thanos@$version failed"
  fi
  {
    printf 'module cascade.local/thanos-build\n\ngo %s\n\n' "${toolchain#go}"
    sed -n '/^replace (/,/^)/p; /^replace [^(]/p' "$gomod"
  } > "$tmp/go.mod"
  # go get lists every module it adds: keep that for a failure.
  if ! (cd "$tmp" && { GOTOOLCHAIN=$toolchain go get "github.com/thanos-io/thanos/cmd/thanos@$version" 2>get.log || { cat get.log >&2; exit 1; }; } &&
    CGO_ENABLED=0 GOTOOLCHAIN=$toolchain go build -tags "$tags" -ldflags "-X github.com/prometheus/common/version.Version=${version#v}" \
      -o "$tools/thanos" github.com/thanos-io/thanos/cmd/thanos); then
    rm -rf "$tmp"
    die "building thanos $version failed"
  fi
  rm -rf "$tmp"
  echo "$version $toolchain $tags" > "$tools/thanos.version"
  log "thanos built in $(( $(date +%s) - start ))s"
}

build_distributed_tools() {
  go_tool victoria-metrics github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics v1.151.0
  go_tool vmalert github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert v1.151.0
  build_thanos
}

case "$steps" in *" packages "*) install_packages ;; esac
case "$steps" in *" tools "*) build_tools; build_deploy_tools ;; esac
case "$steps" in *" tools "*) build_distributed_tools ;; esac
