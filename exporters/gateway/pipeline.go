package gateway

import (
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/loki"
)

// seriesKey identifies one cascade_gateway_requests_total child.
type seriesKey struct {
	route  uint32
	code   uint16
	method uint8
	client clientClass
}

// series holds the metric children of one seriesKey, so the hot path does
// no label lookup.
type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
	timeouts prometheus.Counter
}

type streamKey struct {
	route uint32
	class uint8
}

// pipeline turns lines of one format into metric updates (and Loki
// entries). Each goroutine has its own: it caches route ids, metric
// children and Loki label sets without locks.
type pipeline struct {
	m         *metrics
	routes    *routeTable
	parser    lineParser
	mapper    routeMapper
	rec       record
	timeout   float64 // Config.TimeoutThreshold in seconds; 0 off
	parsed    prometheus.Counter
	malformed prometheus.Counter

	lines uint64 // lines seen, parsed or not

	routeIDs map[string]uint32
	over     map[string]bool // templates refused by a full routeTable
	series   map[seriesKey]*series

	loki        *loki.Client
	lokiBase    model.LabelSet // cluster and gateway
	lokiStreams map[streamKey]model.LabelSet
	now         func() time.Time
}

func newPipeline(format Format, m *metrics, routes *routeTable, cfg *Config, lc *loki.Client) *pipeline {
	p := &pipeline{
		m:         m,
		routes:    routes,
		parser:    newParser(format),
		timeout:   cfg.TimeoutThreshold.Seconds(),
		parsed:    m.lines.WithLabelValues(contract.LinesParsed),
		malformed: m.lines.WithLabelValues(contract.LinesMalformed),
		routeIDs:  make(map[string]uint32),
		over:      make(map[string]bool),
		series:    make(map[seriesKey]*series),
		loki:      lc,
		now:       time.Now,
	}
	if lc != nil {
		p.lokiBase = model.LabelSet{}
		if cfg.Cluster != "" {
			p.lokiBase["cluster"] = model.LabelValue(cfg.Cluster)
		}
		if cfg.Gateway != "" {
			p.lokiBase["gateway"] = model.LabelValue(cfg.Gateway)
		}
		p.lokiStreams = make(map[streamKey]model.LabelSet)
	}
	return p
}

// Malformed implements tail.Handler: it counts a line skipped before
// parsing (too long, or left unfinished in a file that will not grow).
func (p *pipeline) Malformed() {
	p.lines++
	p.malformed.Inc()
}

// Line implements tail.Handler: it counts one access log line, without its
// newline.
func (p *pipeline) Line(b []byte) {
	p.lines++
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) == 0 || !utf8.Valid(b) {
		p.malformed.Inc()
		return
	}
	r := &p.rec
	r.reset()
	if !p.parser.parse(b, r) {
		p.malformed.Inc()
		return
	}
	p.parsed.Inc()

	tmpl, watch := p.mapper.route(r.uri)
	route, ok := p.routeIDs[string(tmpl)]
	if !ok {
		route = p.internRoute(tmpl)
	}
	key := seriesKey{route: route, code: uint16(r.status), method: normalizeMethod(r.method), client: classifyAgent(r.userAgent)}
	s := p.series[key]
	if s == nil {
		s = p.newSeries(key)
	}
	s.requests.Inc()
	if r.hasDuration {
		s.duration.Observe(r.duration)
	}
	if r.status == 504 || r.upstreamTimeout || p.timeout > 0 && !watch && r.hasDuration && r.duration >= p.timeout {
		s.timeouts.Inc()
	}
	if p.loki != nil {
		p.forward(b, route, r)
	}
}

func (p *pipeline) internRoute(tmpl []byte) uint32 {
	if p.over[string(tmpl)] {
		p.m.routesOver.Inc()
		return 0
	}
	id, over := p.routes.intern(tmpl)
	if over {
		// Remembered so later lines of this route skip the lock; bounded
		// because there are finitely many templates.
		p.over[string(tmpl)] = true
		p.m.routesOver.Inc()
		return 0
	}
	p.routeIDs[string(tmpl)] = id
	return id
}

func (p *pipeline) newSeries(k seriesKey) *series {
	route := p.routes.name(k.route)
	client := classNames[k.client]
	s := &series{
		requests: p.m.requests.WithLabelValues(route, methodNames[k.method], codeNames[k.code], client),
		duration: p.m.duration.WithLabelValues(route, client),
		timeouts: p.m.timeouts.WithLabelValues(route, client),
	}
	p.series[k] = s
	return s
}

// forward queues the line for Loki; it never blocks.
func (p *pipeline) forward(line []byte, route uint32, r *record) {
	k := streamKey{route: route, class: uint8(r.status / 100)}
	ls := p.lokiStreams[k]
	if ls == nil {
		ls = p.lokiBase.Clone()
		ls["route"] = model.LabelValue(p.routes.name(route))
		ls["code_class"] = model.LabelValue(codeClass(r.status))
		p.lokiStreams[k] = ls
	}
	t, ok := time.Time{}, false
	if len(r.rawTime) > 0 {
		t, ok = p.parser.timeOf(r.rawTime)
	}
	if !ok {
		t = p.now()
	}
	p.loki.Send(ls, t, string(line))
}
