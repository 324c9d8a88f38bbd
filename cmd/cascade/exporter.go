package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/exporters/apimemory"
	"github.com/cascade-sre/cascade/exporters/gateway"
	"github.com/cascade-sre/cascade/exporters/nodelease"
	"github.com/cascade-sre/cascade/internal/kube"
)

// DefaultExporterAddress is where `cascade exporter` listens unless told.
const DefaultExporterAddress = ":9847"

// exporterCommand holds the flags of `cascade exporter`.
type exporterCommand struct {
	cmd         *kingpin.CmdClause
	web         *web.FlagConfig
	metricsPath string
	maxRequests int
	enablePprof bool
	kube        kube.Config

	nodeleaseOn bool
	nodelease   nodelease.Config

	apimemoryOn bool
	apimemory   apimemory.Config
	endpoints   []string
	cgroups     []string

	gatewayOn   bool
	gateway     gateway.Config
	gatewayLogs []string
}

func addExporterCommand(app *kingpin.Application) *exporterCommand {
	return addExporterFlags(app.Command("exporter", "Serve the enabled exporters (node leases, API server memory, gateway access logs) as one Prometheus scrape target."))
}

// addExporterFlags adds the exporters' flags to cmd: `cascade exporter` and
// `cascade run` share them.
func addExporterFlags(cmd *kingpin.CmdClause) *exporterCommand {
	c := &exporterCommand{nodelease: nodelease.DefaultConfig(), apimemory: apimemory.DefaultConfig(), gateway: gateway.DefaultConfig()}
	c.cmd = cmd
	c.web = kingpinflag.AddFlags(cmd, DefaultExporterAddress)
	cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&c.metricsPath)
	cmd.Flag("web.max-requests", "Maximum number of concurrent scrapes; 0 means no limit.").Default("40").IntVar(&c.maxRequests)
	cmd.Flag("web.enable-pprof", "Serve Go runtime profiles (heap, allocs, CPU, goroutines) under /debug/pprof/, behind the same TLS and auth as the metrics.").BoolVar(&c.enablePprof)

	cmd.Flag("kubeconfig", "Kubeconfig file. Empty: $KUBECONFIG, then ~/.kube/config, then the pod's service account.").StringVar(&c.kube.Kubeconfig)
	cmd.Flag("kube.context", "Kubeconfig context to use; empty means the current context.").StringVar(&c.kube.Context)
	cmd.Flag("kube.qps", "Queries per second the exporter's Kubernetes client may send.").Default("20").Float32Var(&c.kube.QPS)
	cmd.Flag("kube.burst", "Burst of the exporter's Kubernetes client.").Default("40").IntVar(&c.kube.Burst)

	cmd.Flag("exporter.nodelease", "Enable the node lease exporter (cascade_node_*).").Default("true").BoolVar(&c.nodeleaseOn)
	cmd.Flag("nodelease.namespace", "Namespace of the node Leases.").Default(c.nodelease.Namespace).StringVar(&c.nodelease.Namespace)
	cmd.Flag("nodelease.per-node-series", "Export renew time and duration per node. Turn off (--no-nodelease.per-node-series) for very large fleets; the aggregate series stay.").
		Default("true").BoolVar(&c.nodelease.PerNodeSeries)
	cmd.Flag("nodelease.probe-interval", "How often to check that the API server still answers the exporter; 0 turns the probe off.").
		Default(c.nodelease.ProbeInterval.String()).DurationVar(&c.nodelease.ProbeInterval)
	cmd.Flag("nodelease.probe-timeout", "Timeout of one probe; at most the probe interval.").
		Default(c.nodelease.ProbeTimeout.String()).DurationVar(&c.nodelease.ProbeTimeout)

	cmd.Flag("exporter.apimemory", "Enable the API server memory exporter (cascade_apiserver_*).").Default("true").BoolVar(&c.apimemoryOn)
	cmd.Flag("apimemory.endpoint", "API server /metrics endpoint to probe, as [replica=]https://host:port/metrics. Repeatable.").StringsVar(&c.endpoints)
	cmd.Flag("apimemory.bearer-token-file", "Bearer token sent to the endpoints, read again at each probe.").StringVar(&c.apimemory.BearerTokenFile)
	cmd.Flag("apimemory.ca-file", "PEM CA bundle that signs the endpoints' serving certificates.").StringVar(&c.apimemory.CAFile)
	cmd.Flag("apimemory.insecure-skip-tls-verify", "Do not verify the endpoints' TLS certificates.").BoolVar(&c.apimemory.InsecureSkipVerify)
	cmd.Flag("apimemory.cgroup", "Cgroup (v1 or v2) of a local API server, as replica=/sys/fs/cgroup/... or replica=pid:PID. Repeatable.").StringsVar(&c.cgroups)
	cmd.Flag("apimemory.proc-root", "Where pid: cgroups are resolved (PROC/PID/cgroup).").Default(c.apimemory.ProcRoot).StringVar(&c.apimemory.ProcRoot)
	cmd.Flag("apimemory.cgroup-root", "Mount point of the cgroup file system (v1 memory hierarchy under it at memory/).").Default(c.apimemory.CgroupRoot).StringVar(&c.apimemory.CgroupRoot)
	cmd.Flag("apimemory.pods", "Watch the status of API server pods (limit, restarts, OOMKilled) through the Kubernetes API.").Default("true").BoolVar(&c.apimemory.Pods.Enabled)
	cmd.Flag("apimemory.pods.namespace", "Namespace of the API server pods.").Default(c.apimemory.Pods.Namespace).StringVar(&c.apimemory.Pods.Namespace)
	cmd.Flag("apimemory.pods.selector", "Label selector of the API server pods.").Default(c.apimemory.Pods.LabelSelector).StringVar(&c.apimemory.Pods.LabelSelector)
	cmd.Flag("apimemory.pods.container", "Name of the API server container in those pods.").Default(c.apimemory.Pods.Container).StringVar(&c.apimemory.Pods.Container)
	cmd.Flag("apimemory.poll-interval", "How often endpoints and cgroups are read.").Default(c.apimemory.PollInterval.String()).DurationVar(&c.apimemory.PollInterval)
	cmd.Flag("apimemory.timeout", "Timeout of one endpoint probe.").Default(c.apimemory.Timeout.String()).DurationVar(&c.apimemory.Timeout)
	cmd.Flag("apimemory.forget-after", "How long a replica whose pod was deleted is remembered: re-created within it, its counters continue; after it, they start again. Endpoint and cgroup replicas are never forgotten.").Default(c.apimemory.ForgetAfter.String()).DurationVar(&c.apimemory.ForgetAfter)

	g := &c.gateway
	cmd.Flag("exporter.gateway", "Enable the gateway access log exporter (cascade_gateway_*); needs at least one --gateway.log.").BoolVar(&c.gatewayOn)
	cmd.Flag("gateway.log", "Access log to follow, as FORMAT:PATH with FORMAT one of nginx-json, envoy-json, combined. Repeatable.").StringsVar(&c.gatewayLogs)
	cmd.Flag("gateway.positions-file", "Where read positions are kept, so a restart neither loses nor double-counts lines. Empty: none, each start begins at the end of the logs.").StringVar(&g.PositionsFile)
	cmd.Flag("gateway.positions-interval", "How often positions are written; they are also written on shutdown.").Default(g.PositionsInterval.String()).DurationVar(&g.PositionsInterval)
	cmd.Flag("gateway.poll-interval", "How often the logs are checked for new lines and rotation.").Default(g.PollInterval.String()).DurationVar(&g.PollInterval)
	cmd.Flag("gateway.from-beginning", "Read a log with no saved position from its start instead of its end.").BoolVar(&g.FromBeginning)
	cmd.Flag("gateway.max-line-bytes", "Longer lines are counted malformed and skipped.").Default(strconv.Itoa(g.MaxLineBytes)).IntVar(&g.MaxLineBytes)
	cmd.Flag("gateway.rotation-grace", "How long a rotated-away file is still read after it stops growing.").Default(g.RotationGrace.String()).DurationVar(&g.RotationGrace)
	cmd.Flag("gateway.timeout-threshold", "Count a non-watch request at least this slow as a timeout; set it to the gateway's upstream read timeout. 0 turns it off.").Default("0s").DurationVar(&g.TimeoutThreshold)
	cmd.Flag("gateway.max-routes", "Cap on distinct route label values; routes beyond it count as other.").Default(strconv.Itoa(g.MaxRoutes)).IntVar(&g.MaxRoutes)
	cmd.Flag("gateway.cluster", "Loki stream label cluster of forwarded lines (metrics get it from target labels).").StringVar(&g.Cluster)
	cmd.Flag("gateway.name", "Loki stream label gateway of forwarded lines.").StringVar(&g.Gateway)
	cmd.Flag("gateway.loki.url", "Loki push endpoint for the access log lines, e.g. http://loki:3100/loki/api/v1/push; empty turns forwarding off.").StringVar(&g.Loki.URL)
	cmd.Flag("gateway.loki.tenant-id", "Loki tenant (X-Scope-OrgID).").StringVar(&g.Loki.TenantID)
	cmd.Flag("gateway.loki.batch-wait", "Longest an entry waits before its batch is pushed.").Default(g.Loki.BatchWait.String()).DurationVar(&g.Loki.BatchWait)
	cmd.Flag("gateway.loki.batch-size", "Most bytes of lines in one push.").Default(strconv.Itoa(g.Loki.BatchSize)).IntVar(&g.Loki.BatchSize)
	cmd.Flag("gateway.loki.queue-capacity", "Entries queued in front of the Loki client; beyond it they are dropped and counted, never blocking the tailer.").Default(strconv.Itoa(g.Loki.QueueCapacity)).IntVar(&g.Loki.QueueCapacity)
	cmd.Flag("gateway.loki.timeout", "Timeout of one push.").Default(g.Loki.Timeout.String()).DurationVar(&g.Loki.Timeout)
	cmd.Flag("gateway.loki.max-retries", "Retries of a failed push before its batch is dropped and counted; must be above 0.").Default(strconv.Itoa(g.Loki.MaxRetries)).IntVar(&g.Loki.MaxRetries)
	cmd.Flag("gateway.loki.min-backoff", "First retry delay.").Default(g.Loki.MinBackoff.String()).DurationVar(&g.Loki.MinBackoff)
	cmd.Flag("gateway.loki.max-backoff", "Longest retry delay.").Default(g.Loki.MaxBackoff.String()).DurationVar(&g.Loki.MaxBackoff)
	return c
}

// part is an exporter together with its background work, if any.
type part struct {
	exporters.Named
	runner exporters.Runner
}

// build creates the enabled exporters. allowNone lets `cascade run` work
// from other targets alone.
func (c *exporterCommand) build(logger *slog.Logger, allowNone bool) ([]part, error) {
	var parts []part
	var client *kube.Client
	needKube := c.nodeleaseOn || (c.apimemoryOn && c.apimemory.Pods.Enabled)
	if needKube {
		var err error
		client, err = kube.NewClient(c.kube, "cascade-exporter/"+version.Version)
		if err != nil {
			return nil, err
		}
	}
	if c.nodeleaseOn {
		e, err := nodelease.New(c.nodelease, client, logger.With("exporter", "nodelease"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{exporters.Named{Name: "nodelease", Collector: e}, e})
	}
	if c.apimemoryOn {
		for _, s := range c.endpoints {
			spec, err := apimemory.ParseEndpointSpec(s)
			if err != nil {
				return nil, fmt.Errorf("--apimemory.endpoint: %w", err)
			}
			c.apimemory.Endpoints = append(c.apimemory.Endpoints, spec)
		}
		for _, s := range c.cgroups {
			spec, err := apimemory.ParseCgroupSpec(s)
			if err != nil {
				return nil, fmt.Errorf("--apimemory.cgroup: %w", err)
			}
			c.apimemory.Cgroups = append(c.apimemory.Cgroups, spec)
		}
		e, err := apimemory.New(c.apimemory, client, logger.With("exporter", "apimemory"))
		if err != nil {
			return nil, fmt.Errorf("%w (or turn the exporter off with --no-exporter.apimemory)", err)
		}
		parts = append(parts, part{exporters.Named{Name: "apimemory", Collector: e}, e})
	}
	if c.gatewayOn {
		for _, s := range c.gatewayLogs {
			spec, err := gateway.ParseLogSpec(s)
			if err != nil {
				return nil, fmt.Errorf("--gateway.log: %w", err)
			}
			c.gateway.Logs = append(c.gateway.Logs, spec)
		}
		e, err := gateway.New(c.gateway, logger.With("exporter", "gateway"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{exporters.Named{Name: "gateway", Collector: e}, e})
	} else if len(c.gatewayLogs) > 0 {
		return nil, errors.New("--gateway.log given but the gateway exporter is off: add --exporter.gateway")
	}
	if len(parts) == 0 && !allowNone {
		return nil, errors.New("every exporter is disabled")
	}
	return parts, nil
}

// exporterGCPercent is the exporter's GOGC unless $GOGC is set: its heap
// is small (~10 MiB at 5,000 nodes) and mostly short-lived, so collecting
// it twice as often costs little CPU and keeps its memory below
// kube-state-metrics' (BENCHMARKS.md).
const exporterGCPercent = 50

func (c *exporterCommand) run(logger *slog.Logger) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(exporterGCPercent)
	}
	parts, err := c.build(logger, false)
	if err != nil {
		logger.Error("cannot start the exporter", "err", err)
		return 1
	}
	if err := c.validateWeb(); err != nil {
		logger.Error("invalid --web.config.file", "file", *c.web.WebConfigFile, "err", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g run.Group
	c.addToGroup(&g, ctx, cancel, parts, reg, logger, nil)
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	return runGroup(&g, logger, "exporter")
}

func (c *exporterCommand) validateWeb() error {
	if *c.web.WebConfigFile == "" {
		return nil
	}
	return web.Validate(*c.web.WebConfigFile)
}

// addToGroup adds the exporters' background work and the HTTP server to g.
// reg receives the exporters and the process's own metrics; routes adds
// handlers of the caller's to the server.
func (c *exporterCommand) addToGroup(g *run.Group, ctx context.Context, cancel context.CancelFunc, parts []part, reg *prometheus.Registry, logger *slog.Logger, routes func(*http.ServeMux)) {
	named := make([]exporters.Named, 0, len(parts))
	var appenders []exporters.TextAppender
	for _, p := range parts {
		named = append(named, p.Named)
		if a, ok := p.Collector.(exporters.TextAppender); ok {
			appenders = append(appenders, a)
		}
	}
	reg.MustRegister(
		exporters.NewSet(logger, named...),
		versioncollector.NewCollector("cascade_exporter"),
		collectors.NewGoCollector(),
		exporters.NewProcessCollector(),
	)
	mux := c.handler(reg, appenders, logger)
	if routes != nil {
		routes(mux)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	for _, p := range parts {
		g.Add(func() error {
			if err := p.runner.Run(ctx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			<-ctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	g.Add(func() error {
		logger.Info("serving", "version", version.Info(), "exporters", len(parts), "address", *c.web.WebListenAddresses)
		if err := web.ListenAndServe(server, c.web, logger); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = server.Shutdown(sctx)
	})
}

// runGroup runs g and turns its end into an exit code: a signal is a clean
// stop, anything else a failure.
func runGroup(g *run.Group, logger *slog.Logger, what string) int {
	if err := g.Run(); err != nil && !errors.As(err, &run.SignalError{}) {
		logger.Error(what+" stopped", "err", err)
		return 1
	}
	logger.Info(what + " stopped")
	return 0
}

func (c *exporterCommand) handler(reg *prometheus.Registry, appenders []exporters.TextAppender, logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(c.metricsPath, exporters.Handler(reg, appenders, c.maxRequests, logger))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	if c.enablePprof {
		// Registered by hand: importing net/http/pprof also adds these to
		// http.DefaultServeMux, which this server never uses.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if c.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Cascade exporter",
			Description: "Node lease age, API server memory and gateway request rate, for the Cascade incident signal",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: c.metricsPath, Text: "Metrics"}},
		})
		if err == nil {
			mux.Handle("/", landing)
		}
	}
	return mux
}
