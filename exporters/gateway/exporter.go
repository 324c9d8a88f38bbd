// Package gateway exports the request rate of the API gateway in front of
// the Kubernetes control plane (cascade_gateway_*) from its access logs:
// nginx JSON, Envoy JSON or combined log format, followed by internal/tail
// (rename and copytruncate rotation, a positions file so a restart neither
// loses nor counts twice). Raw paths become bounded route templates of the
// Kubernetes API grammar and user agents bounded client classes; parsed
// lines can be forwarded to Loki.
//
// Files: this one (the exporter), config.go and factory.go (its
// configuration and flags), pipeline.go (a line to metric updates, the hot
// path), parse.go with parse_nginx.go, parse_envoy.go and
// parse_combined.go (one per format) and jsonscan.go, route.go with
// resources.go (route templates), classify.go (client classes), metrics.go
// (the families).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/internal/loki"
	"github.com/cascade-sre/cascade/internal/redact"
	"github.com/cascade-sre/cascade/internal/tail"
)

// lokiCloseTimeout bounds how long shutdown waits for the last lines to
// reach Loki.
const lokiCloseTimeout = 5 * time.Second

// Exporter tails the configured access logs and serves their metrics.
type Exporter struct {
	cfg     Config
	logger  *slog.Logger
	m       *metrics
	routes  *routeTable
	loki    *loki.Client
	running atomic.Bool
}

// New validates cfg and returns an exporter; no file is read until Run.
// A log that exists must be a regular file: a FIFO, a directory or a device
// is refused here, at start. With cfg.Loki.URL set it starts the Loki
// client, which does not contact the store before the first batch is due.
func New(cfg Config, logger *slog.Logger) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, l := range cfg.Logs {
		if fi, err := os.Stat(l.Path); err == nil {
			if err := tail.CheckRegular(l.Path, fi); err != nil {
				return nil, fmt.Errorf("gateway: log %w", err)
			}
		}
	}
	cfg.Logs = append([]LogSpec(nil), cfg.Logs...)
	e := &Exporter{
		cfg:    cfg,
		logger: logger,
		m:      newMetrics(),
		routes: newRouteTable(cfg.MaxRoutes),
	}
	if cfg.Loki.URL != "" {
		lc, err := loki.New(cfg.Loki, logger.With("component", "loki"))
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		e.loki = lc
	}
	return e, nil
}

// Describe implements exporters.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range e.m.collectors {
		c.Describe(ch)
	}
	if e.loki != nil {
		e.loki.Describe(ch)
	}
}

// Update implements exporters.Collector: it serves the counters as they
// are, without touching the files.
func (e *Exporter) Update(ch chan<- prometheus.Metric) error {
	for _, c := range e.m.collectors {
		c.Collect(ch)
	}
	if e.loki != nil {
		e.loki.Collect(ch)
	}
	return nil
}

// Run follows the logs until ctx ends, writing positions every
// PositionsInterval and once more after the last line was counted, then
// flushes the Loki client. It returns an error only when it cannot start:
// an unreadable positions file, or a second call.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice")
	}
	files := make([]tail.File, 0, len(e.cfg.Logs))
	for _, spec := range e.cfg.Logs {
		files = append(files, tail.File{
			Path:       spec.Path,
			Lines:      newPipeline(spec.Format, e.m, e.routes, &e.cfg, e.loki),
			ReadErrors: e.m.readErrors.WithLabelValues(spec.Path),
			Renames:    e.m.rotations.WithLabelValues(spec.Path, "rename"),
			Truncates:  e.m.rotations.WithLabelValues(spec.Path, "truncate"),
			Abandoned:  e.m.abandoned.WithLabelValues(spec.Path),
		})
	}
	t, err := tail.New(tail.Options{Config: e.cfg.Config, PositionsWriteErrors: e.m.positionErrors, Logger: e.logger}, files...)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	attrs := []any{"logs", len(e.cfg.Logs), "positions_file", e.cfg.PositionsFile}
	if e.loki != nil {
		attrs = append(attrs, "loki", redact.URL(e.cfg.Loki.URL))
	}
	e.logger.Info("following gateway access logs", attrs...)
	t.Run(ctx)
	if e.loki != nil {
		cctx, cancel := context.WithTimeout(context.Background(), lokiCloseTimeout)
		defer cancel()
		if err := e.loki.Close(cctx); err != nil {
			e.logger.Warn("not every line reached Loki before shutdown", "err", err)
		}
	}
	return nil
}

// ReadFile counts every line of one file from its start to its end, in the
// calling goroutine, with no positions and no rotation handling: a one-shot
// pass for benchmarks and backfills. Lines go to the same metrics (and
// Loki) as Run's. It returns the number of lines read.
func (e *Exporter) ReadFile(ctx context.Context, spec LogSpec) (uint64, error) {
	if err := spec.validate(); err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	p := newPipeline(spec.Format, e.m, e.routes, &e.cfg, e.loki)
	if err := tail.ReadFile(ctx, spec.Path, e.cfg.MaxLineBytes, p); err != nil {
		return p.lines, fmt.Errorf("gateway: %w", err)
	}
	return p.lines, nil
}
