// Package server makes the registered exporters one Prometheus scrape
// target: it holds the list of exporters, declares their flags beside the
// web and Kubernetes client flags they share, builds the enabled ones and
// serves them over HTTP. `cascade exporter`, `cascade run` and any other
// main wire the exporters through it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
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

// Factories are the exporters, in the order their flags are listed and
// they are built. A new exporter is one more line here.
var Factories = []exporters.Factory{
	nodelease.Factory,
	apimemory.Factory,
	gateway.Factory,
}

// DefaultAddress is where the exporters are served unless told.
const DefaultAddress = ":9847"

// Server holds the flags of the scrape target and of every exporter.
type Server struct {
	web         *web.FlagConfig
	metricsPath string
	maxRequests int
	enableGzip  bool
	enablePprof bool
	kube        kube.Config
	exporters   []*exporter
}

// exporter is one registered exporter, its switch and its configuration.
type exporter struct {
	factory exporters.Factory
	enabled bool
	config  exporters.Config
}

// AddFlags declares the flags of the scrape target and of every exporter
// of Factories on app.
func AddFlags(app exporters.FlagSet) *Server {
	s := &Server{}
	s.web = kingpinflag.AddFlags(app, DefaultAddress)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&s.metricsPath)
	app.Flag("web.max-requests", "Maximum number of concurrent scrapes; 0 means no limit.").Default("40").IntVar(&s.maxRequests)
	app.Flag("web.enable-gzip", "Compress the metrics with gzip when the scraper accepts it, as Prometheus does: a tenth of the bytes, for more CPU and a slower scrape. Off, as in kube-state-metrics: a cluster's network carries the text in less time than compressing it takes.").BoolVar(&s.enableGzip)
	app.Flag("web.enable-pprof", "Serve Go runtime profiles (heap, allocs, CPU, goroutines) under /debug/pprof/, behind the same TLS and auth as the metrics.").BoolVar(&s.enablePprof)

	app.Flag("kubeconfig", "Kubeconfig file. Empty: $KUBECONFIG, then ~/.kube/config, then the pod's service account.").StringVar(&s.kube.Kubeconfig)
	app.Flag("kube.context", "Kubeconfig context to use; empty means the current context.").StringVar(&s.kube.Context)
	app.Flag("kube.qps", "Queries per second the exporter's Kubernetes client may send.").Default("20").Float32Var(&s.kube.QPS)
	app.Flag("kube.burst", "Burst of the exporter's Kubernetes client.").Default("40").IntVar(&s.kube.Burst)

	for _, f := range Factories {
		e := &exporter{factory: f}
		app.Flag("exporter."+f.Name, f.Help).Default(fmt.Sprint(f.DefaultEnabled)).BoolVar(&e.enabled)
		e.config = f.Flags(app)
		s.exporters = append(s.exporters, e)
	}
	return s
}

// Part is a built exporter.
type Part struct {
	exporters.Named
	// Runner is its background work, if it has any.
	Runner exporters.Runner
}

// Build creates the enabled exporters. allowNone lets a caller with other
// work (cascade run) go on with none.
func (s *Server) Build(logger *slog.Logger, allowNone bool) ([]Part, error) {
	var client *kube.Client
	kubeClient := func() (*kube.Client, error) {
		if client != nil {
			return client, nil
		}
		var err error
		client, err = kube.NewClient(s.kube, "cascade-exporter/"+version.Version)
		return client, err
	}
	var parts []Part
	for _, e := range s.exporters {
		if !e.enabled {
			if c, ok := e.config.(exporters.OffChecker); ok {
				if err := c.CheckOff(); err != nil {
					return nil, err
				}
			}
			continue
		}
		c, err := e.config.New(exporters.Deps{Logger: logger.With("exporter", e.factory.Name), Kube: kubeClient})
		if err != nil {
			return nil, err
		}
		p := Part{Named: exporters.Named{Name: e.factory.Name, Collector: c}}
		p.Runner, _ = c.(exporters.Runner)
		parts = append(parts, p)
	}
	if len(parts) == 0 && !allowNone {
		return nil, errors.New("every exporter is disabled")
	}
	return parts, nil
}

// ListenAddresses are the addresses of --web.listen-address.
func (s *Server) ListenAddresses() []string { return *s.web.WebListenAddresses }

// WebConfigFile is --web.config.file.
func (s *Server) WebConfigFile() string { return *s.web.WebConfigFile }

// ValidateWeb checks the web configuration file, if any.
func (s *Server) ValidateWeb() error {
	if *s.web.WebConfigFile == "" {
		return nil
	}
	return web.Validate(*s.web.WebConfigFile)
}

// AddToGroup adds the exporters' background work and the HTTP server to g;
// any of them ending cancels ctx. The metrics path serves the exporters,
// the build info, the process's own metrics and, if reg is not nil, what
// the caller registered there; routes, if set, adds the caller's handlers.
// It fails only if the exporters' descriptors cannot be read, or
// registered in reg beside the caller's.
func (s *Server) AddToGroup(g *run.Group, ctx context.Context, cancel context.CancelFunc, parts []Part, reg *prometheus.Registry, logger *slog.Logger, routes func(*http.ServeMux)) error {
	appenders, err := metricsAppenders(parts, reg, logger)
	if err != nil {
		return err
	}
	mux := s.Handler(reg, appenders, logger)
	if routes != nil {
		routes(mux)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	for _, p := range parts {
		if p.Runner == nil {
			continue
		}
		g.Add(func() error {
			if err := p.Runner.Run(ctx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			<-ctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	g.Add(func() error {
		logger.Info("serving", "version", version.Info(), "exporters", len(parts), "address", s.ListenAddresses())
		if err := web.ListenAndServe(server, s.web, logger); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = server.Shutdown(sctx)
	})
	return nil
}

// metricsAppenders returns what the metrics path writes besides reg: the
// exporters' own families and the build info, the Go runtime's and the
// process's series, then the per-node families.
//
// Without a registry (cascade exporter) the exporters' own families are
// written as text too, with buffers kept between scrapes
// (exporters.CollectorText). With one (cascade run) they are registered
// there: the caller's collectors may have families of the same names (its
// Loki client's and the gateway exporter's), which one registry merges into
// one family and two writers would each write.
func metricsAppenders(parts []Part, reg *prometheus.Registry, logger *slog.Logger) ([]exporters.TextAppender, error) {
	named := make([]exporters.Named, 0, len(parts))
	var perNode []exporters.TextAppender
	for _, p := range parts {
		named = append(named, p.Named)
		if a, ok := p.Collector.(exporters.TextAppender); ok {
			perNode = append(perNode, a)
		}
	}
	own := []prometheus.Collector{exporters.NewSet(logger, named...), versioncollector.NewCollector("cascade_exporter")}
	appenders := []exporters.TextAppender{exporters.NewGoRuntime(), exporters.NewProcessMetrics()}
	if reg != nil {
		for _, c := range own {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	} else {
		text, err := exporters.NewCollectorText(logger, own...)
		if err != nil {
			return nil, err
		}
		appenders = append([]exporters.TextAppender{text}, appenders...)
	}
	return append(appenders, perNode...), nil
}

// Handler serves reg (if not nil) and appenders at the metrics path,
// /-/healthy, a landing page and, with --web.enable-pprof, the Go profiles.
func (s *Server) Handler(reg *prometheus.Registry, appenders []exporters.TextAppender, logger *slog.Logger) *http.ServeMux {
	var gatherer prometheus.Gatherer
	if reg != nil { // a nil *Registry in the interface would not be nil
		gatherer = reg
	}
	mux := http.NewServeMux()
	mux.Handle(s.metricsPath, exporters.Handler(gatherer, appenders, exporters.HandlerOpts{MaxInFlight: s.maxRequests, Gzip: s.enableGzip}, logger))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	if s.enablePprof {
		// Registered by hand: importing net/http/pprof also adds these to
		// http.DefaultServeMux, which this server never uses.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Cascade exporter",
			Description: "Node lease age, API server memory and gateway request rate, for the Cascade incident signal",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: s.metricsPath, Text: "Metrics"}},
		})
		if err == nil {
			mux.Handle("/", landing)
		}
	}
	return mux
}
