// Package incident follows each ControlPlaneCascadeIncident through its
// phases, from the rule engine's fresh state after every evaluation of the
// incident group: onset (when the root-cause signal began), escalation (the
// page), mitigation (the failed component recovered: its root-cause signal
// quiet for 5 minutes; the fleet not yet), recovery (nodes and gateway
// back) and resolved (the alert ended). An incident is about one cluster or
// one region (its scope); a regional incident also records each cluster it
// hits and each that recovers. Every event goes to a JSON-lines journal and
// to the sinks (Loki); the open incidents are persisted so a restart
// mid-incident neither loses one nor opens it twice.
//
// Files: event.go (the event, its JSON and Loki forms), journal.go (the
// journal and the open incidents on disk), signals.go (what is read from
// the rules for each scope), this file (the phases).
package incident

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/cascade-sre/cascade/rules"
)

// Firing is one incident alert firing: what it is about and its root cause.
type Firing struct {
	Key
	RootCause string
	// Shared names the shared component of a regional root cause.
	Shared string
}

// state is one open incident.
type state struct {
	Key
	ID        string    `json:"id"`
	RootCause string    `json:"root_cause"`
	Shared    string    `json:"shared,omitempty"`
	Phase     Phase     `json:"phase"`
	Since     time.Time `json:"since"`
	// Hit lists the clusters a regional incident has hit, in order, and
	// whether each is failing now (true) or has recovered (false).
	Hit   []string        `json:"hit,omitempty"`
	Now   map[string]bool `json:"now,omitempty"`
	Total int             `json:"total,omitempty"`
}

// Tracker turns evaluations into events. It is safe for concurrent use.
type Tracker struct {
	query  promrules.QueryFunc
	sinks  []Sink
	logger *slog.Logger
	dir    string

	events        *prometheus.CounterVec
	journalErrors prometheus.Counter
	openGauge     *prometheus.GaugeVec

	mu      sync.Mutex
	open    []*state
	pending []Event // not yet in the journal: its last write failed
}

// Sink receives every event; it must not block (internal/loki does not).
type Sink func(Event)

// Open loads the open incidents persisted in dir (created if missing).
func Open(dir string, query promrules.QueryFunc, logger *slog.Logger, sinks ...Sink) (*Tracker, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("incident: %w", err)
	}
	t := &Tracker{
		query: query, sinks: sinks, logger: logger, dir: dir,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_incident_events_total",
			Help: "Incident events recorded, by phase.",
		}, []string{"phase"}),
		journalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cascade_incident_journal_errors_total",
			Help: "Failed writes of the incident journal or state; the events are kept and written again at the next evaluation.",
		}),
		openGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cascade_incidents_open",
			Help: "Incidents open now, by scope.",
		}, []string{"scope"}),
	}
	open, err := loadState(t.statePath())
	if err != nil {
		return nil, err
	}
	t.open = open
	t.updateOpenGauge()
	return t, nil
}

// Collectors are the tracker's own metrics.
func (t *Tracker) Collectors() []prometheus.Collector {
	return []prometheus.Collector{t.events, t.journalErrors, t.openGauge}
}

func (t *Tracker) statePath() string   { return filepath.Join(t.dir, stateFile) }
func (t *Tracker) journalPath() string { return filepath.Join(t.dir, journalFile) }

// AfterEval is the engine hook: after the incident group is evaluated at
// ts, read its alerts and the signals and record what changed.
func (t *Tracker) AfterEval(ctx context.Context, g *promrules.Group, ts time.Time) {
	if g.Name() != rules.IncidentGroup {
		return
	}
	var firing []Firing
	for _, r := range g.AlertingRules() {
		if r.Name() != rules.IncidentAlert {
			continue
		}
		for _, a := range r.ActiveAlerts() {
			if a.State != promrules.StateFiring {
				continue
			}
			f := Firing{
				Key:       Key{Scope: Scope(a.Labels.Get(rules.ScopeLabel)), Region: a.Labels.Get(rules.RegionLabel), Cluster: a.Labels.Get(rules.ClusterLabel)},
				RootCause: a.Labels.Get(rules.RootCauseLabel),
				Shared:    a.Labels.Get(rules.SharedLabel),
			}
			if f.Scope != ScopeRegion {
				f.Scope = ScopeCluster // rule files older than scopes
			} else {
				f.Cluster = ""
			}
			firing = append(firing, f)
		}
	}
	if err := t.Observe(ctx, ts, firing); err != nil {
		t.logger.Error("incident tracking", "err", err)
	}
}

// Observe records the incidents firing at ts. Events are handed to the
// sinks whatever happens to the journal; a failed journal write is
// returned, counted, and tried again with the next events.
func (t *Tracker) Observe(ctx context.Context, ts time.Time, firing []Firing) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var events []Event
	seen := map[string]bool{}
	for _, f := range firing {
		seen[f.Key.String()] = true
		s := t.find(f.Key)
		if s == nil {
			s = &state{Key: f.Key, ID: f.Key.String() + "@" + ts.UTC().Format(time.RFC3339), RootCause: f.RootCause, Shared: f.Shared}
			t.open = append(t.open, s)
			sig := signalsOf(s)
			onset := ts
			if first, ok := t.value(ctx, sig.onset, ts); ok && first > 0 && !math.IsInf(first, 0) && first <= float64(ts.Unix()) {
				onset = time.Unix(0, int64(first*1e9)).UTC()
			}
			events = append(events, t.event(ctx, s, Onset, onset))
			events = append(events, t.clusters(ctx, s, ts)...)
			events = append(events, t.event(ctx, s, Escalation, ts))
			continue
		}
		events = append(events, t.clusters(ctx, s, ts)...)
		sig := signalsOf(s)
		switch s.Phase {
		case Escalation:
			switch {
			case sig.quiet == "":
				// No failed component to watch (a common cause, an
				// unknown root cause): recovery is the next step.
				if t.gone(ctx, sig.symptoms, ts) {
					events = append(events, t.event(ctx, s, Recovery, ts))
				}
			case t.quiet(ctx, sig.quiet, ts):
				events = append(events, t.event(ctx, s, Mitigation, ts))
			}
		case Mitigation:
			if t.gone(ctx, sig.symptoms, ts) {
				events = append(events, t.event(ctx, s, Recovery, ts))
			}
		}
	}
	t.open = slices.DeleteFunc(t.open, func(s *state) bool {
		if seen[s.Key.String()] {
			return false
		}
		events = append(events, t.event(ctx, s, Resolved, ts))
		return true
	})
	t.updateOpenGauge()
	if len(events) == 0 && len(t.pending) == 0 {
		return nil
	}
	err := t.persist(events)
	for _, e := range events {
		t.events.WithLabelValues(string(e.Phase)).Inc()
		t.logger.Info("incident event", "incident", e.Incident, "scope", e.Scope, "region", e.Region, "cluster", e.Cluster,
			"phase", e.Phase, "root_cause", e.RootCause, "at", e.Time)
		for _, sink := range t.sinks {
			sink(e)
		}
	}
	return err
}

func (t *Tracker) find(k Key) *state {
	for _, s := range t.open {
		if s.Key == k {
			return s
		}
	}
	return nil
}

func (t *Tracker) updateOpenGauge() {
	counts := map[Scope]int{ScopeCluster: 0, ScopeRegion: 0}
	for _, s := range t.open {
		counts[s.Scope]++
	}
	for scope, n := range counts {
		t.openGauge.WithLabelValues(string(scope)).Set(float64(n))
	}
}

// persist appends the pending and new events to the journal, then writes
// the open incidents, so a crash leaves either the old state or the new.
func (t *Tracker) persist(events []Event) error {
	t.pending = append(t.pending, events...)
	if err := appendJournal(t.journalPath(), t.pending); err != nil {
		t.journalErrors.Inc()
		return fmt.Errorf("%w (%d events kept for the next try)", err, len(t.pending))
	}
	t.pending = nil
	if err := saveState(t.statePath(), t.open); err != nil {
		t.journalErrors.Inc()
		return err
	}
	return nil
}

// event moves s to phase p at time at, with the evidence of the moment.
func (t *Tracker) event(ctx context.Context, s *state, p Phase, at time.Time) Event {
	s.Phase, s.Since = p, at
	e := t.base(s, p, at)
	e.Evidence = Evidence{}
	for _, ev := range signalsOf(s).evidence {
		if v, ok := t.value(ctx, ev.query, at); ok {
			e.Evidence[ev.name] = v
		}
	}
	return e
}

func (t *Tracker) base(s *state, p Phase, at time.Time) Event {
	return Event{
		Time: at, Scope: s.Scope, Region: s.Region, Cluster: s.Cluster, Shared: s.Shared,
		Incident: s.ID, Phase: p, RootCause: s.RootCause,
		ClustersHit: slices.Clone(s.Hit), ClustersTotal: s.Total,
	}
}

// clusterQuietFor is how long a hit cluster must be healthy to count as
// recovered: leases flap while an API crash-loops.
const clusterQuietFor = 2 * time.Minute

// clusters records the clusters a regional incident hits and those that
// recover, from the rules' view of the region at ts.
func (t *Tracker) clusters(ctx context.Context, s *state, ts time.Time) []Event {
	if s.Scope != ScopeRegion {
		return nil
	}
	if s.Now == nil {
		s.Now = map[string]bool{}
	}
	if total, ok := t.value(ctx, fmt.Sprintf("%s{region=%q}", rules.RegionClusters, s.Region), ts); ok {
		s.Total = int(total)
	}
	hitNow, err := t.query(ctx, fmt.Sprintf("%s{region=%q}", rules.ClusterHitStart, s.Region), ts)
	if err != nil {
		t.logger.Warn("incident: reading the clusters hit", "region", s.Region, "err", err)
		return nil
	}
	var events []Event
	slices.SortFunc(hitNow, func(a, b promqlSample) int { return compareHit(a, b) })
	for _, sample := range hitNow {
		c := sample.Metric.Get(rules.ClusterLabel)
		if s.Now[c] {
			continue
		}
		at := ts
		if v := sample.F; v > 0 && v <= float64(ts.Unix()) {
			at = time.Unix(0, int64(v*1e9)).UTC()
		}
		if !slices.Contains(s.Hit, c) {
			s.Hit = append(s.Hit, c)
		}
		s.Now[c] = true
		e := t.base(s, ClusterHit, at)
		e.Cluster = c
		events = append(events, e)
	}
	for _, c := range s.Hit {
		if !s.Now[c] {
			continue
		}
		q := fmt.Sprintf("max_over_time(%s{region=%q, cluster=%q}[%ds])", rules.ClusterHit, s.Region, c, int(clusterQuietFor.Seconds()))
		if !t.gone(ctx, q, ts) {
			continue
		}
		s.Now[c] = false
		e := t.base(s, ClusterRecovered, ts)
		e.Cluster = c
		events = append(events, e)
	}
	return events
}

// value runs a query expected to give one sample at ts; ok is false when it
// gives none (or fails: evidence is best effort, phases wait).
func (t *Tracker) value(ctx context.Context, q string, ts time.Time) (float64, bool) {
	if q == "" {
		return 0, false
	}
	vec, err := t.query(ctx, q, ts)
	if err != nil || len(vec) == 0 {
		return 0, false
	}
	return vec[0].F, true
}

// quietFor is how long the root-cause signal must stay off before the
// incident counts as mitigated: a crash-looping API server is quiet between
// two OOM kills, and that is not a mitigation.
const quietFor = 5 * time.Minute

// quiet says whether the signal (a recording rule selector, 1 or absent)
// has not held at any evaluation in the last quietFor.
func (t *Tracker) quiet(ctx context.Context, selector string, ts time.Time) bool {
	return t.gone(ctx, fmt.Sprintf("max_over_time(%s[%ds])", selector, int(quietFor.Seconds())), ts)
}

// gone says whether q gives nothing, or zero, at ts. A failed query is not
// gone: a phase never advances on an error.
func (t *Tracker) gone(ctx context.Context, q string, ts time.Time) bool {
	vec, err := t.query(ctx, q, ts)
	if err != nil {
		return false
	}
	return len(vec) == 0 || vec[0].F == 0
}
