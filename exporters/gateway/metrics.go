package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/internal/contract"
)

// metrics are the exporter's metric families, built once.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	timeouts       *prometheus.CounterVec
	lines          *prometheus.CounterVec
	readErrors     *prometheus.CounterVec
	rotations      *prometheus.CounterVec
	abandoned      *prometheus.CounterVec
	positionErrors prometheus.Counter
	routesOver     prometheus.Counter
	collectors     []prometheus.Collector
}

func newMetrics() *metrics {
	vec := func(c contract.Metric) *prometheus.CounterVec {
		return prometheus.NewCounterVec(c.CounterOpts(), c.Labels)
	}
	d := contract.GatewayRequestDuration
	m := &metrics{
		requests:       vec(contract.GatewayRequests),
		duration:       prometheus.NewHistogramVec(d.HistogramOpts(contract.GatewayDurationBuckets), d.Labels),
		timeouts:       vec(contract.GatewayTimeouts),
		lines:          vec(contract.GatewayLogLines),
		readErrors:     vec(contract.GatewayLogReadErrors),
		rotations:      vec(contract.GatewayLogRotations),
		abandoned:      vec(contract.GatewayLogFilesAbandoned),
		positionErrors: prometheus.NewCounter(contract.GatewayPositionsWriteErrors.CounterOpts()),
		routesOver:     prometheus.NewCounter(contract.GatewayRoutesOverLimit.CounterOpts()),
	}
	// Both results exist from the start, so a rate of malformed lines is
	// defined before the first one.
	m.lines.WithLabelValues(contract.LinesParsed)
	m.lines.WithLabelValues(contract.LinesMalformed)
	m.collectors = []prometheus.Collector{
		m.requests, m.duration, m.timeouts, m.lines, m.readErrors, m.rotations, m.abandoned, m.positionErrors, m.routesOver,
	}
	return m
}

// routeTable interns route templates, shared by every pipeline, and
// enforces Config.MaxRoutes.
type routeTable struct {
	mu    sync.Mutex
	ids   map[string]uint32
	names []string
	max   int
}

func newRouteTable(max int) *routeTable {
	t := &routeTable{ids: map[string]uint32{RouteOther: 0}, names: []string{RouteOther}, max: max}
	return t
}

// intern returns the id of tmpl, or of RouteOther (over=true) once the
// table is full.
func (t *routeTable) intern(tmpl []byte) (id uint32, over bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[string(tmpl)]; ok {
		return id, false
	}
	// RouteOther itself does not count against the limit.
	if len(t.names)-1 >= t.max {
		return 0, true
	}
	name := string(tmpl)
	id = uint32(len(t.names))
	t.ids[name] = id
	t.names = append(t.names, name)
	return id, false
}

func (t *routeTable) name(id uint32) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.names[id]
}
