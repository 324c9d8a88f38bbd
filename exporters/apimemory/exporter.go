package apimemory

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/internal/contract"
)

// Source kinds, the values of the source label of the self-metrics.
const (
	kindMetrics = "metrics"
	kindCgroup  = "cgroup"
	kindPods    = "pods"
)

var (
	workingSetDesc = contract.APIServerWorkingSet.Desc()
	limitDesc      = contract.APIServerLimit.Desc()
	oomKillsDesc   = contract.APIServerOOMKills.Desc()
	restartsDesc   = contract.APIServerRestarts.Desc()
	upDesc         = contract.APIServerUp.Desc()
	podWatchUpDesc = contract.APIServerPodWatchUp.Desc()
)

// observation is what one source currently knows about one replica.
type observation struct {
	workingSet, limit, up maybe
	oomKills, restarts    maybe
}

type maybe struct {
	value float64
	known bool
}

func known(v float64) maybe { return maybe{value: v, known: true} }

// merge adds what a source knows to the replica's view. Sources are merged
// most direct first, so a gauge already known is kept; counters take the
// maximum (the counting rule).
func (m *observation) merge(o observation) {
	m.workingSet = m.workingSet.or(o.workingSet)
	m.limit = m.limit.or(o.limit)
	m.up = m.up.or(o.up)
	m.oomKills = m.oomKills.max(o.oomKills)
	m.restarts = m.restarts.max(o.restarts)
}

func (a maybe) or(b maybe) maybe {
	if a.known {
		return a
	}
	return b
}

func (a maybe) atLeast(v float64) maybe {
	if a.known {
		a.value = max(a.value, v)
	}
	return a
}

func (a maybe) max(b maybe) maybe {
	if !b.known || (a.known && a.value >= b.value) {
		return a
	}
	return b
}

// Exporter serves API server memory per replica. It implements the
// exporters.Collector and exporters.Runner interfaces.
type Exporter struct {
	cfg       Config
	cgroups   []*cgroupSource
	endpoints []*endpointSource
	pods      *podSource // nil when the pod source is off

	sourceErrors *prometheus.CounterVec
	now          func() time.Time

	mu sync.Mutex
	// exported holds each replica's counters as last served. A source can
	// leave a replica (its pod deleted) while others stay, and the maximum
	// over those left may be lower: the counters never go below these. A
	// replica no source has served for cfg.ForgetAfter is forgotten.
	exported map[string]replicaCounters
}

type replicaCounters struct {
	oomKills, restarts float64
	lastServed         time.Time
}

// New validates cfg and builds the exporter. kube is the client of the
// cluster for the pod source; it may be nil when that source is off.
func New(cfg Config, kube kubernetes.Interface, logger *slog.Logger) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		cfg:          cfg,
		now:          time.Now,
		exported:     map[string]replicaCounters{},
		sourceErrors: prometheus.NewCounterVec(contract.APIServerSourceErrors.CounterOpts(), contract.APIServerSourceErrors.Labels),
	}
	for _, spec := range cfg.Cgroups {
		e.cgroups = append(e.cgroups, newCgroupSource(spec, cfg, e.sourceErrors.WithLabelValues(kindCgroup), logger))
	}
	if len(cfg.Endpoints) > 0 {
		client, err := newProbeClient(cfg)
		if err != nil {
			return nil, err
		}
		for _, spec := range cfg.Endpoints {
			e.endpoints = append(e.endpoints, newEndpointSource(spec, cfg, client, e.sourceErrors.WithLabelValues(kindMetrics), logger))
		}
	}
	if cfg.Pods.Enabled {
		if kube == nil {
			return nil, errors.New("pod source enabled but no Kubernetes client given")
		}
		var err error
		e.pods, err = newPodSource(cfg.Pods, cfg.ForgetAfter, kube, e.sourceErrors.WithLabelValues(kindPods), logger)
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Describe implements exporters.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- workingSetDesc
	ch <- limitDesc
	ch <- oomKillsDesc
	ch <- restartsDesc
	ch <- upDesc
	if e.pods != nil {
		ch <- podWatchUpDesc
	}
	e.sourceErrors.Describe(ch)
}

// Update implements exporters.Collector. It only reads what the sources
// last saw; all reading of files and the network happens in Run.
func (e *Exporter) Update(ch chan<- prometheus.Metric) error {
	replicas := map[string]*observation{}
	add := func(replica string, o observation) {
		m := replicas[replica]
		if m == nil {
			m = &observation{}
			replicas[replica] = m
		}
		m.merge(o)
	}
	// Most direct first: see merge.
	for _, s := range e.cgroups {
		add(s.spec.Replica, s.observation())
	}
	for _, s := range e.endpoints {
		add(s.spec.Replica, s.observation())
	}
	if e.pods != nil {
		watchUp := e.pods.observe(add)
		ch <- prometheus.MustNewConstMetric(podWatchUpDesc, prometheus.GaugeValue, boolValue(watchUp))
	}

	now := e.now()
	e.mu.Lock()
	for replica, m := range replicas {
		before := e.exported[replica]
		m.oomKills = m.oomKills.atLeast(before.oomKills)
		m.restarts = m.restarts.atLeast(before.restarts)
		e.exported[replica] = replicaCounters{oomKills: m.oomKills.value, restarts: m.restarts.value, lastServed: now}
	}
	for replica, c := range e.exported {
		if _, served := replicas[replica]; !served && now.Sub(c.lastServed) >= e.cfg.ForgetAfter {
			delete(e.exported, replica)
		}
	}
	e.mu.Unlock()

	for replica, m := range replicas {
		for _, s := range []struct {
			desc      *prometheus.Desc
			valueType prometheus.ValueType
			v         maybe
		}{
			{workingSetDesc, prometheus.GaugeValue, m.workingSet},
			{limitDesc, prometheus.GaugeValue, m.limit},
			{upDesc, prometheus.GaugeValue, m.up},
			{oomKillsDesc, prometheus.CounterValue, m.oomKills},
			{restartsDesc, prometheus.CounterValue, m.restarts},
		} {
			if s.v.known {
				ch <- prometheus.MustNewConstMetric(s.desc, s.valueType, s.v.value, replica)
			}
		}
	}
	e.sourceErrors.Collect(ch)
	return nil
}

// Run polls the endpoints and cgroups and watches the pods until ctx is
// done. Each source has its own loop, so a slow endpoint delays no other.
func (e *Exporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range e.cgroups {
		wg.Go(func() { every(ctx, e.cfg.PollInterval, s.poll) })
	}
	for _, s := range e.endpoints {
		wg.Go(func() {
			every(ctx, e.cfg.PollInterval, func() {
				pctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
				defer cancel()
				s.poll(pctx)
			})
		})
	}
	if e.pods != nil {
		wg.Go(func() { e.pods.run(ctx) })
	}
	wg.Wait()
	return nil
}

// every calls f now and then at each interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// monotonicCounter turns a count read from a source that may start again
// from zero (a cgroup or a pod recreated) into one that never goes down.
type monotonicCounter struct {
	total, last float64
	seen        bool
}

func (c *monotonicCounter) observe(raw float64) {
	switch {
	case !c.seen:
		c.total = raw
	case raw >= c.last:
		c.total += raw - c.last
	default: // reset: everything read now happened since
		c.total += raw
	}
	c.last, c.seen = raw, true
}
