package apimemory

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/internal/redact"
)

// startTimeTolerance is how much process_start_time_seconds must rise to
// count as a restart.
const startTimeTolerance = 1.0

// endpointSource probes one API server's /metrics at every poll.
type endpointSource struct {
	spec      EndpointSpec
	client    *http.Client
	tokenFile string
	errors    prometheus.Counter
	logger    *slog.Logger

	mu        sync.Mutex
	probed    bool // at least one probe finished
	up        bool // the last probe succeeded
	resident  float64
	lastStart float64 // start time seen last, 0 if never
	restarts  float64
}

func newProbeClient(cfg Config) (*http.Client, error) {
	tlsConfig := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if cfg.CAFile != "" {
		pool, err := loadCertPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CAFile: %w", err)
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	// Probes are bounded by the context of each poll, not a client timeout.
	return &http.Client{Transport: transport}, nil
}

func newEndpointSource(spec EndpointSpec, cfg Config, client *http.Client, errorCount prometheus.Counter, logger *slog.Logger) *endpointSource {
	return &endpointSource{
		spec:      spec,
		client:    client,
		tokenFile: cfg.BearerTokenFile,
		errors:    errorCount,
		logger:    logger.With("source", kindMetrics, "replica", spec.Replica, "url", redact.URL(spec.URL)),
	}
}

func (s *endpointSource) poll(ctx context.Context) {
	pm, err := s.probe(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	wasFailing := s.probed && !s.up
	s.probed, s.up = true, err == nil
	if err != nil {
		s.errors.Inc()
		if !wasFailing {
			s.logger.Warn("API server probe failed", "err", err)
		}
		return
	}
	if wasFailing {
		s.logger.Info("API server probe succeeds again")
	}
	s.resident = pm.residentBytes
	if pm.startTime != 0 {
		// The start time is derived from the boot time, which moves when
		// the clock is stepped; a new process starts at least its
		// predecessor's lifetime later, seconds at the very least. A
		// smaller start time (a load balancer alternating replicas) is not
		// a new process of this replica.
		if s.lastStart != 0 && pm.startTime > s.lastStart+startTimeTolerance {
			s.restarts++
		}
		s.lastStart = max(s.lastStart, pm.startTime)
	}
}

func (s *endpointSource) probe(ctx context.Context) (processMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.spec.URL, nil)
	if err != nil {
		return processMetrics{}, err
	}
	// Text format: the process_* lines can be picked out without parsing
	// the rest (see parseProcessMetrics).
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if s.tokenFile != "" {
		// Read each time: projected service account tokens rotate.
		token, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return processMetrics{}, fmt.Errorf("bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return processMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return processMetrics{}, fmt.Errorf("GET %s: %s", redact.URL(s.spec.URL), resp.Status)
	}
	pm, err := parseProcessMetrics(resp.Body)
	if err != nil {
		return processMetrics{}, fmt.Errorf("GET %s: %w", redact.URL(s.spec.URL), err)
	}
	return pm, nil
}

func (s *endpointSource) observation() observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := observation{restarts: known(s.restarts)}
	if s.probed {
		o.up = known(boolValue(s.up))
	}
	if s.up {
		o.workingSet = known(s.resident)
	}
	return o
}
