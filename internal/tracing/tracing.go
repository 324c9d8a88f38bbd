// Package tracing exports OpenTelemetry traces of Cascade's own work (one
// trace per rule group evaluation, with a span per rule and per batch of
// alerts handed to the notifier) as the Prometheus configuration's
// `tracing:` section says: by OTLP over gRPC or HTTP, to an OpenTelemetry
// Collector, Jaeger, Tempo and the like.
//
// It installs the tracer provider globally, because Prometheus's rules and
// promql packages start their spans with the global tracer. With no endpoint
// nothing is installed and every span is OpenTelemetry's no-op: no cost.
// ApplyConfig swaps the provider when the section changes, so a reload turns
// tracing on, off, or to another receiver without a restart.
//
// Why not Prometheus's own tracing manager (prometheus/tracing), which reads
// the same section: at the Prometheus version Cascade must build with
// (v0.310.0, for loki-client-go), it cannot install a provider next to the
// OpenTelemetry this module needs (v1.45 or later, for gRPC): its resource
// mixes two semantic-convention schemas and is refused ("conflicting Schema
// URL"), and an insecure HTTP client is refused too (prometheus/prometheus
// #18452). TestPrometheusTracingManagerStillFails says when that changes.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcommon "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/credentials"
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
	cfg      promconfig.TracingConfig
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

// ApplyConfig turns tracing on, off or to another receiver. An unchanged
// section changes nothing, unless it names TLS files (which may have been
// renewed: they are read again, as Prometheus does); one that cannot be
// applied returns an error and changes nothing. The replaced provider
// flushes its last spans in the background, so a reload never waits on a
// slow receiver.
func (m *Manager) ApplyConfig(cfg promconfig.TracingConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if reflect.DeepEqual(cfg, m.cfg) && reflect.DeepEqual(cfg.TLSConfig, promcommon.TLSConfig{}) {
		return nil
	}
	var next *sdktrace.TracerProvider
	if cfg.Endpoint != "" {
		var err error
		if next, err = m.newProvider(cfg); err != nil {
			return err
		}
		otel.SetTracerProvider(next)
		m.logger.Info("tracing on", "endpoint", cfg.Endpoint, "client_type", cfg.ClientType, "sampling_fraction", cfg.SamplingFraction)
	} else {
		otel.SetTracerProvider(noop.NewTracerProvider())
		if m.provider != nil {
			m.logger.Info("tracing off")
		}
	}
	if old := m.provider; old != nil {
		go m.shutdown(old)
	}
	m.cfg, m.provider = cfg, next
	return nil
}

func (m *Manager) newProvider(cfg promconfig.TracingConfig) (*sdktrace.TracerProvider, error) {
	client, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// New only builds the exporter; nothing is sent until the first batch.
	exporter, err := otlptrace.New(context.Background(), client)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", ServiceName),
		attribute.String("service.version", m.version),
	)
	// The batch processor drops spans when its queue is full and exports in
	// its own goroutine: a dead receiver never holds up an evaluation. The
	// sampler is Prometheus's: a share of new traces, and whatever a
	// caller's sampled span decided.
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplingFraction))),
		sdktrace.WithResource(res),
	), nil
}

// newClient makes the OTLP client the section asks for, honouring every
// one of its settings.
func newClient(cfg promconfig.TracingConfig) (otlptrace.Client, error) {
	var tlsConfig *promcommon.TLSConfig
	if !cfg.Insecure {
		tlsConfig = &cfg.TLSConfig
	}
	switch cfg.ClientType {
	case promconfig.TracingClientGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithHeaders(cfg.Headers)}
		if tlsConfig == nil {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			tc, err := promcommon.NewTLSConfig(tlsConfig)
			if err != nil {
				return nil, err
			}
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		}
		if cfg.Compression != "" {
			opts = append(opts, otlptracegrpc.WithCompressor(cfg.Compression))
		}
		if cfg.Timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(time.Duration(cfg.Timeout)))
		}
		return otlptracegrpc.NewClient(opts...), nil
	case promconfig.TracingClientHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(cfg.Endpoint), otlptracehttp.WithHeaders(cfg.Headers)}
		if tlsConfig == nil {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			tc, err := promcommon.NewTLSConfig(tlsConfig)
			if err != nil {
				return nil, err
			}
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tc))
		}
		if cfg.Compression == promconfig.GzipCompression {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		if cfg.Timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(time.Duration(cfg.Timeout)))
		}
		return otlptracehttp.NewClient(opts...), nil
	}
	return nil, fmt.Errorf("client_type %q: want grpc or http", cfg.ClientType)
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
	m.provider, m.cfg = nil, promconfig.TracingConfig{}
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	otel.SetTracerProvider(noop.NewTracerProvider())
	return p.Shutdown(ctx)
}
