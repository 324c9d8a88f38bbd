// Package tracing exports OpenTelemetry traces of Cascade's own work (one
// trace per rule group evaluation, with a span per rule and per batch of
// alerts handed to the notifier) to an OTLP/HTTP receiver: an OpenTelemetry
// Collector, Jaeger, Tempo and the like.
//
// It installs the tracer provider globally, because Prometheus's rules and
// promql packages start their spans with the global tracer. With no endpoint
// nothing is installed and every span is OpenTelemetry's no-op: no cost.
// ApplyConfig swaps the provider when the configuration changes, so a reload
// turns tracing on, off, or to another receiver without a restart.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cascade-sre/cascade/internal/runconfig"
)

// ServiceName is the service.name of every span Cascade exports.
const ServiceName = "cascade"

// shutdownTimeout bounds how long a replaced provider may take to flush.
const shutdownTimeout = 5 * time.Second

// Manager owns the global tracer provider.
type Manager struct {
	version string
	logger  *slog.Logger
	errors  prometheus.Counter

	mu       sync.Mutex
	cfg      runconfig.Tracing
	provider *sdktrace.TracerProvider // nil while tracing is off
}

// NewManager returns a Manager with tracing off; version becomes the spans'
// service.version. It takes over OpenTelemetry's global error handler: export
// failures (a receiver down or refusing) are logged and counted in
// cascade_tracing_errors_total.
func NewManager(version string, logger *slog.Logger) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{version: version, logger: logger, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cascade_tracing_errors_total",
		Help: "OpenTelemetry errors, chiefly failed span exports.",
	})}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		m.errors.Inc()
		m.logger.Warn("tracing", "err", err)
	}))
	return m
}

// Collector returns the Manager's metrics, to register.
func (m *Manager) Collector() prometheus.Collector { return m.errors }

// Validate reports whether cfg can be applied.
func Validate(cfg runconfig.Tracing) error {
	if cfg.Endpoint == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(cfg.Endpoint)
	if err == nil {
		if n, perr := strconv.Atoi(port); host == "" || perr != nil || n <= 0 || n > 65535 {
			err = fmt.Errorf("bad host or port")
		}
	}
	if err != nil {
		return fmt.Errorf("tracing: endpoint %q: want host:port of an OTLP/HTTP receiver (usually port 4318): %v", cfg.Endpoint, err)
	}
	return nil
}

// ApplyConfig turns tracing on, off or to another receiver. An unchanged
// configuration changes nothing; an invalid one returns an error and
// changes nothing. The replaced provider flushes its last spans in the
// background, so a reload never waits on a slow receiver.
func (m *Manager) ApplyConfig(cfg runconfig.Tracing) error {
	if err := Validate(cfg); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cfg == m.cfg {
		return nil
	}
	var next *sdktrace.TracerProvider
	if cfg.Endpoint != "" {
		var err error
		if next, err = m.newProvider(cfg); err != nil {
			return err
		}
		otel.SetTracerProvider(next)
		m.logger.Info("tracing on", "endpoint", cfg.Endpoint)
	} else {
		otel.SetTracerProvider(noop.NewTracerProvider())
		m.logger.Info("tracing off")
	}
	if old := m.provider; old != nil {
		go m.shutdown(old)
	}
	m.cfg, m.provider = cfg, next
	return nil
}

func (m *Manager) newProvider(cfg runconfig.Tracing) (*sdktrace.TracerProvider, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.Endpoint)}
	if cfg.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	// New only builds the client; nothing is sent until the first batch.
	exporter, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", ServiceName),
		attribute.String("service.version", m.version),
	)
	// The batch processor drops spans when its queue is full and exports in
	// its own goroutine: a dead receiver never holds up an evaluation.
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
	), nil
}

func (m *Manager) shutdown(p *sdktrace.TracerProvider) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		m.logger.Warn("tracing: flushing the previous exporter", "err", err)
	}
}

// Shutdown flushes the spans not yet exported and stops the exporter.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	p := m.provider
	m.provider, m.cfg = nil, runconfig.Tracing{}
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	otel.SetTracerProvider(noop.NewTracerProvider())
	return p.Shutdown(ctx)
}
