# Builds use Prometheus's default labels (stringlabels, the most compact); the
# slicelabels tag that github.com/grafana/loki-client-go needed is gone with it.
# GOTAGS adds build tags to every go command here, for experiments.
GO        ?= go
GOTAGS    ?=
GOFLAGS_T := $(if $(GOTAGS),-tags $(GOTAGS))
comma     := ,
# cascade-exporter is ./cmd/cascade built with the tag cascade_exporter.
EXPORTER_TAGS := cascade_exporter$(if $(GOTAGS),$(comma)$(GOTAGS))
TOOLS     := $(CURDIR)/.tools
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/prometheus/common/version.Version=$(VERSION) \
             -X github.com/prometheus/common/version.Revision=$(REVISION) \
             -X github.com/prometheus/common/version.Branch=main
export PATH := $(TOOLS)/bin:$(PATH)

.PHONY: all build image manifests demo lab vet test test-short deps fuzz bench-exporter bench-gateway bench-engine bench-detection bench-distributed bench-region dashboards-picture clean

all: build

# build writes bin/cascade, every command, and bin/cascade-exporter, the same
# `cascade exporter` alone (the build tag cascade_exporter): what runs beside
# every cluster links neither the engine nor the tooling (README.md, "Two
# binaries in one image"). cascade-exporter is built without cgo, as the
# image builds it, so that bench-exporter measures what runs: linked with
# the C library it holds about 2 MiB more at start-up (the C library's
# pages, the dynamic loader's relocations).
build:
	$(GO) build $(GOFLAGS_T) -ldflags "$(LDFLAGS)" -o bin/cascade ./cmd/cascade
	CGO_ENABLED=0 $(GO) build -tags $(EXPORTER_TAGS) -ldflags "$(LDFLAGS)" -o bin/cascade-exporter ./cmd/cascade

# image writes Cascade's container image as an OCI archive, with no container
# daemon: the static linux binaries cascade and cascade-exporter (trimmed
# paths, so any checkout of a commit builds the same bytes), a CA bundle and a non-root user on an empty base,
# every timestamp the commit's. Load it with podman load or docker load -i.
IMAGE_NAME ?= ghcr.io/cascade-sre/cascade
IMAGE_DIR  ?= bin/image
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
COMMIT_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build $(GOFLAGS_T) -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(IMAGE_DIR)/cascade-linux-$(IMAGE_ARCH) ./cmd/cascade
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -tags $(EXPORTER_TAGS) -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(IMAGE_DIR)/cascade-exporter-linux-$(IMAGE_ARCH) ./cmd/cascade
	$(GO) run $(GOFLAGS_T) ./hack/image --binary $(IMAGE_DIR)/cascade-linux-$(IMAGE_ARCH) --exporter-binary $(IMAGE_DIR)/cascade-exporter-linux-$(IMAGE_ARCH) --arch $(IMAGE_ARCH) \
		--name $(IMAGE_NAME) --version $(VERSION) --revision $(REVISION) --created $(COMMIT_TIME) \
		--output $(IMAGE_DIR)/cascade-image.tar

# manifests writes what is generated from rules/*.yml, dashboards/json and
# the Helm chart: the chart's and the mixin's copies of them, and the plain
# manifests of deploy/. Run it after changing any of those; a test fails
# while they are stale.
manifests:
	$(GO) run $(GOFLAGS_T) ./hack/manifests -helm $(TOOLS)/bin/helm

# demo plays the incident Cascade exists for, with no cluster and no
# configuration, and ends with the post-incident report (under a minute).
DEMO_FLAGS ?=
demo: build
	bin/cascade demo $(DEMO_FLAGS)

# lab reproduces the outage on real components (API servers that really run
# out of memory, real leases, a real node lifecycle controller, a real
# gateway and Alertmanager) and checks that Cascade pages once; LAB_FLAGS
# picks the shape and size (README, "The lab").
LAB_FLAGS ?= --shape cluster
lab: deps build
	$(GO) run $(GOFLAGS_T) ./lab --cascade bin/cascade $(LAB_FLAGS)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(GOFLAGS_T) ./...

# deps installs what the tests talk to on a bare machine: etcd, nginx and
# Prometheus from Debian, kube-apiserver and kube-controller-manager (the lab) built
# once into .tools/bin.
deps:
	./hack/install-deps.sh

# test is the one command CI and newcomers run: it installs the real
# components, then vets and runs every test.
# The scenario simulation and the backtests over it are single-goroutine,
# CPU-bound work that the race detector slows sixfold and checks nothing in:
# they run without it, everything else with it.
NORACE_PKGS := ./scenario/... ./rules/backtest/...
test: deps vet
	$(GO) test $(GOFLAGS_T) -race -count=1 -timeout 30m $$($(GO) list $(GOFLAGS_T) ./... | grep -v -e '/scenario$$' -e '/rules/backtest$$')
	$(GO) test $(GOFLAGS_T) -count=1 -timeout 30m $(NORACE_PKGS)

# test-short runs only the tests that need no outside component.
test-short:
	$(GO) test $(GOFLAGS_T) -short -count=1 ./...

FUZZTIME ?= 2m
# fuzz runs every fuzz target for FUZZTIME each.
fuzz:
	./hack/fuzz-all.sh $(FUZZTIME)

# bench-exporter measures cascade exporter beside a bare client_golang
# registry (the floor) and kube-state-metrics (the peer), built once.
bench-exporter: deps build
	./hack/bench/exporter/install-ksm.sh
	$(GO) run $(GOFLAGS_T) ./hack/bench/exporter

bench-gateway: deps
	$(GO) run $(GOFLAGS_T) ./hack/bench/gateway

# bench-engine runs cascade run and Debian's Prometheus side by side on the
# same 5,000-node fleet target and rule files: evaluation time, samples/s,
# RSS and CPU of both (a few minutes).
ENGINE_BENCH_FLAGS ?=
bench-engine: deps build
	$(GO) run $(GOFLAGS_T) ./hack/bench/engine $(ENGINE_BENCH_FLAGS)

# bench-detection backtests every scenario at 500 and 5,000 nodes and
# rewrites the detection table of BENCHMARKS.md.
bench-detection:
	$(GO) run $(GOFLAGS_T) ./hack/bench/detection -write BENCHMARKS.md

# bench-region measures provider mode's evaluation beside Prometheus: regions
# of 100, 300 and 1,000 clusters of 50 nodes, healthy and in the seed's
# outage (the heaviest evaluation), about 20 minutes.
REGION_BENCH_FLAGS ?= -sizes=100,300,1000 -warmup=100s -duration=2m
bench-region: deps build
	$(GO) run $(GOFLAGS_T) ./hack/bench/engine -region $(REGION_BENCH_FLAGS)
	$(GO) run $(GOFLAGS_T) ./hack/bench/engine -region -incident $(REGION_BENCH_FLAGS)

# bench-distributed measures the time to page through Thanos (Receive,
# Query, Ruler) beside cascade run alone on the same API server OOM, and
# the remote-write delivery delay (about 4 minutes a run).
DISTRIBUTED_BENCH_FLAGS ?=
bench-distributed: deps build
	$(GO) run $(GOFLAGS_T) ./hack/bench/distributed $(DISTRIBUTED_BENCH_FLAGS)

# dashboards-picture redraws docs/dashboards/overview.png and region.png: the
# overview's queries over the backtested incident scenario, the regional
# overview's over the regional outage, in Prometheus.
dashboards-picture: deps
	$(GO) test $(GOFLAGS_T) -count=1 -run 'TestDashboardsShowIncident$$|TestRegionalDashboardShowsRegionalIncident$$' ./dashboards \
		-args -picture $(CURDIR)/docs/dashboards/overview.png -region-picture $(CURDIR)/docs/dashboards/region.png

clean:
	rm -rf bin
