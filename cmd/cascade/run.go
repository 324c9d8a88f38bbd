//go:build !cascade_exporter

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/discovery"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/cascade-sre/cascade/collector"
	"github.com/cascade-sre/cascade/exporters/server"
	"github.com/cascade-sre/cascade/internal/loki"
	"github.com/cascade-sre/cascade/internal/runconfig"
	"github.com/cascade-sre/cascade/internal/tracing"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/engine"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/rules/remotequery"
)

// runCommand is `cascade run`: exporters, collector and engine in one process.
type runCommand struct {
	cmd        *kingpin.CmdClause
	exporters  *server.Server
	configFile string
	check      bool
	lifecycle  bool
}

func addRunCommand(app *kingpin.Application) *runCommand {
	cmd := app.Command("run", "Run everything: the exporters, the collector scraping them (and any other target) into the embedded TSDB, and the rule engine sending alerts to Alertmanager.")
	r := &runCommand{cmd: cmd, exporters: server.AddFlags(cmd)}
	cmd.Flag("config.file", "Configuration file: a Prometheus configuration plus a cascade: section. Empty: the embedded default, which scrapes this process's own exporters at 127.0.0.1:9847.").StringVar(&r.configFile)
	cmd.Flag("config.check", "Check the configuration and rule files, then exit: 0 if they load.").BoolVar(&r.check)
	cmd.Flag("web.enable-lifecycle", "Serve POST /-/reload and /-/quit (behind the web config's TLS and basic auth). Off: they answer 403; SIGHUP reloads, SIGTERM stops.").BoolVar(&r.lifecycle)
	return r
}

func (r *runCommand) load(logger *slog.Logger) (*runconfig.Config, error) {
	if r.configFile == "" {
		dir, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		return runconfig.Parse([]byte(runconfig.Default), dir, logger)
	}
	return runconfig.Load(r.configFile, logger)
}

func (r *runCommand) run(logger *slog.Logger) int {
	cfg, err := r.load(logger)
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return 1
	}
	if r.check {
		return r.checkOnly(cfg)
	}
	if err := checkStoragePath(cfg.Cascade.Storage.Path); err != nil {
		logger.Error("invalid configuration", "err", err)
		return 1
	}
	// Most of the heap is Prometheus's (the TSDB head, the scrape caches),
	// and Prometheus collects it at GOGC=75 unless $GOGC says otherwise:
	// the configuration's runtime value is exactly that (the section
	// itself is refused). The Go default, 100, let the heap grow a third
	// further between collections.
	debug.SetGCPercent(cfg.Prometheus.Runtime.GoGC)
	parts, err := r.exporters.Build(logger, true)
	if err != nil {
		logger.Error("cannot start the exporters", "err", err)
		return 1
	}
	if err := r.exporters.ValidateWeb(); err != nil {
		logger.Error("invalid --web.config.file", "file", r.exporters.WebConfigFile(), "err", err)
		return 1
	}

	reg := prometheus.NewRegistry()
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(reg)
	if err != nil {
		logger.Error("service discovery metrics", "err", err)
		return 1
	}
	retention, _ := cfg.Cascade.Storage.Retention.Value() // validated by Load
	coll, err := collector.Open(collector.Options{
		DataDir:    cfg.Cascade.Storage.Path,
		Retention:  retention,
		Registerer: reg,
		SDMetrics:  sdMetrics,
		Logger:     logger.With("component", "collector"),
	})
	if err != nil {
		logger.Error("cannot open the collector", "err", err)
		return 1
	}
	defer func() {
		if err := coll.Close(); err != nil {
			logger.Error("closing the TSDB", "err", err)
		}
	}()
	externalURL, err := externalURL(cfg, r.exporters.ListenAddresses())
	if err != nil {
		logger.Error("invalid external URL", "err", err)
		return 1
	}
	queryable, err := ruleQueryable(cfg, coll, reg)
	if err != nil {
		logger.Error("invalid cascade.query", "err", err)
		return 1
	}
	var tracker *incident.Tracker // set below, before any evaluation runs
	eng, err := engine.New(engine.Options{
		Storage:      coll.Storage(),
		Queryable:    queryable,
		DefaultRules: rules.Files(),
		ExternalURL:  externalURL,
		AfterEval:    func(ctx context.Context, g *promrules.Group, ts time.Time) { tracker.AfterEval(ctx, g, ts) },
		Registerer:   reg,
		SDMetrics:    sdMetrics,
		Logger:       logger.With("component", "engine"),
	})
	if err != nil {
		logger.Error("cannot create the rule engine", "err", err)
		return 1
	}
	sinks, closeSinks, err := eventSinks(cfg, reg, logger)
	if err != nil {
		logger.Error("cannot ship incident events", "err", err)
		return 1
	}
	defer closeSinks()
	tracker, err = incident.Open(filepath.Join(cfg.Cascade.Storage.Path, "incidents"), eng.QueryFunc(), logger.With("component", "incident"), sinks...)
	if err != nil {
		logger.Error("cannot open the incident state", "err", err)
		return 1
	}
	reg.MustRegister(tracker.Collectors()...)

	// Tracing is configured first, so the first evaluation is traced too; its
	// configuration was validated by load, so applying it changes all or nothing.
	tracer := tracing.NewManager(version.Version, logger.With("component", "tracing"))
	reg.MustRegister(tracer.Collector())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracer.Shutdown(ctx) // flush the last spans
	}()
	rl := &reloader{load: r.load, logger: logger, apply: []func(*runconfig.Config) error{
		func(c *runconfig.Config) error { return tracer.ApplyConfig(c.Prometheus.TracingConfig) },
		func(c *runconfig.Config) error { return coll.ApplyConfig(c.Prometheus) },
		func(c *runconfig.Config) error { return eng.ApplyConfig(c.Prometheus) },
	}}
	reg.MustRegister(rl.metrics()...)
	if err := rl.apply1(cfg); err != nil {
		logger.Error("cannot apply the configuration", "err", err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g run.Group
	quit := make(chan struct{})
	var quitOnce sync.Once
	if err := r.exporters.AddToGroup(&g, ctx, cancel, parts, reg, logger, func(mux *http.ServeMux) {
		r.lifecycleRoutes(mux, rl, func() { quitOnce.Do(func() { close(quit) }) })
		mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Ready") })
	}); err != nil {
		logger.Error("cannot start the exporters", "err", err)
		return 1
	}
	g.Add(func() error {
		select {
		case <-quit:
			logger.Info("stopping: asked to by /-/quit")
		case <-ctx.Done():
		}
		return nil
	}, func(error) { cancel() })
	g.Add(func() error { return coll.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return eng.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				_ = rl.reload() // logged by reload; the old configuration stays
			case <-ctx.Done():
				return nil
			}
		}
	}, func(error) { cancel() })
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	releaseStartupPages(logger, "set-up")
	return runGroup(&g, logger, "cascade run")
}

// lifecycleRoutes serves /-/reload and /-/quit (POST or PUT) when
// --web.enable-lifecycle is on and refuses them with 403 when it is off, as
// Prometheus does: anyone who reaches the port could otherwise reload or stop
// the process. The server's TLS and basic auth stand in front of them.
func (r *runCommand) lifecycleRoutes(mux *http.ServeMux, rl *reloader, quit func()) {
	reload := func(w http.ResponseWriter, _ *http.Request) {
		if err := rl.reload(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "reloaded")
	}
	stop := func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "stopping")
		quit()
	}
	if !r.lifecycle {
		forbidden := func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the lifecycle API is not enabled: start cascade run with --web.enable-lifecycle, or send SIGHUP to reload", http.StatusForbidden)
		}
		reload, stop = forbidden, forbidden
	}
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		mux.HandleFunc(method+" /-/reload", reload)
		mux.HandleFunc(method+" /-/quit", stop)
	}
	// Any other method: 405, not the landing page's 404.
	onlyPostOrPut := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "only POST or PUT requests are allowed", http.StatusMethodNotAllowed)
	}
	mux.HandleFunc("/-/reload", onlyPostOrPut)
	mux.HandleFunc("/-/quit", onlyPostOrPut)
}

// checkOnly is --config.check: the configuration loaded already; check its
// storage path and the rule files it names (or the embedded ones).
func (r *runCommand) checkOnly(cfg *runconfig.Config) int {
	err := checkStoragePath(cfg.Cascade.Storage.Path)
	if err == nil {
		err = checkRules(cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cascade: %v\n", err)
		return 1
	}
	fmt.Printf("configuration OK: %d scrape configs\n", len(cfg.Prometheus.ScrapeConfigs))
	return 0
}

// checkStoragePath refuses a cascade.storage.path that cannot hold the
// TSDB: one that is a file, or lies under a file, or cannot be looked at.
// One that does not exist yet is created at start.
func checkStoragePath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("cascade.storage.path: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("cascade.storage.path %s is not a directory", path)
	}
	return nil
}

// checkRules parses the rule files cfg names, or the embedded ones, without
// loading them into anything.
func checkRules(cfg *runconfig.Config) error {
	files, err := engine.RuleFiles(rules.Files(), cfg.Prometheus.RuleFiles...)
	if err != nil {
		return err
	}
	if err := engine.CheckRules(rules.Files(), files...); err != nil {
		return fmt.Errorf("rule files: %w", err)
	}
	return nil
}

// eventSinks ships incident events to Loki when cascade.loki.url is set,
// through the project's non-blocking sender: a dead Loki never holds up
// evaluation, and what it cannot take is counted as dropped.
func eventSinks(cfg *runconfig.Config, reg prometheus.Registerer, logger *slog.Logger) ([]incident.Sink, func(), error) {
	if cfg.Cascade.Loki.URL == "" {
		return nil, func() {}, nil
	}
	lc := loki.DefaultConfig()
	lc.URL = cfg.Cascade.Loki.URL
	lc.TenantID = cfg.Cascade.Loki.TenantID
	lc.QueueCapacity = cfg.Cascade.Loki.QueueCapacity
	lc.Component = "incident"
	if d, _ := cfg.Cascade.Loki.Timeout.Value(); d > 0 {
		lc.Timeout = d
	}
	sender, err := loki.New(lc, logger.With("component", "loki"))
	if err != nil {
		return nil, nil, err
	}
	reg.MustRegister(sender)
	sink := func(e incident.Event) {
		labels, line := e.LokiStream()
		sender.Send(labels, e.Time, line)
	}
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sender.Close(ctx)
	}
	return []incident.Sink{sink}, closeFn, nil
}

// ruleQueryable is what the rules read: nil (the embedded TSDB) without
// cascade.query.url; with it, the remote query API for raw series and the
// embedded TSDB for what the rules write themselves. Read once at start.
func ruleQueryable(cfg *runconfig.Config, coll *collector.Collector, reg prometheus.Registerer) (storage.Queryable, error) {
	q := cfg.Cascade.Query
	if q.URL == "" {
		return nil, nil
	}
	timeout, _ := q.Timeout.Value() // validated by Load
	remote, err := remotequery.New(remotequery.Config{
		URL:        q.URL,
		Timeout:    timeout,
		HTTPClient: q.HTTPClientConfig,
		Lookback:   engine.DefaultLookbackDelta,
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	return remotequery.Split(coll.Storage(), remote), nil
}

func externalURL(cfg *runconfig.Config, listen []string) (*url.URL, error) {
	if cfg.Cascade.ExternalURL != "" {
		return url.Parse(cfg.Cascade.ExternalURL)
	}
	host, _ := os.Hostname()
	port := "9847"
	if len(listen) > 0 {
		if _, p, err := net.SplitHostPort(listen[0]); err == nil {
			port = p
		}
	}
	return &url.URL{Scheme: "http", Host: host + ":" + port}, nil
}

// reloader re-reads the configuration, checks it and its rule files whole,
// and only then applies it to every part: a broken file changes nothing.
type reloader struct {
	load   func(*slog.Logger) (*runconfig.Config, error)
	apply  []func(*runconfig.Config) error
	logger *slog.Logger

	mu          sync.Mutex
	success     prometheus.Gauge
	successTime prometheus.Gauge
}

func (rl *reloader) metrics() []prometheus.Collector {
	rl.success = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cascade_config_last_reload_successful",
		Help: "1 if the last configuration reload succeeded.",
	})
	rl.successTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cascade_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration was last loaded successfully.",
	})
	return []prometheus.Collector{rl.success, rl.successTime}
}

func (rl *reloader) reload() error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	cfg, err := rl.load(rl.logger)
	if err == nil {
		err = checkRules(cfg)
	}
	if err == nil {
		err = rl.apply1(cfg)
	}
	if err != nil {
		rl.success.Set(0)
		rl.logger.Error("reload failed; the previous configuration stays in force", "err", err)
		return err
	}
	rl.logger.Info("configuration reloaded")
	return nil
}

func (rl *reloader) apply1(cfg *runconfig.Config) error {
	var errs []error
	for _, apply := range rl.apply {
		if err := apply(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		rl.success.Set(0)
		return err
	}
	rl.success.Set(1)
	rl.successTime.SetToCurrentTime()
	return nil
}
