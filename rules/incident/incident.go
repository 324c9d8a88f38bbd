// Package incident follows each ControlPlaneCascadeIncident through its
// phases, from the rule engine's fresh state after every evaluation of the
// incident group: onset (when the root-cause signal began), escalation (the
// page), mitigation (the control plane recovered: its root-cause signal
// quiet for 5 minutes; the fleet not yet),
// recovery (nodes and gateway back) and resolved (the alert ended). Each
// phase change is an event with its time and evidence, written to a
// JSON-lines journal and handed to a sink (Loki); the open incidents are
// persisted so a restart mid-incident neither loses one nor opens it twice.
package incident

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/rules"
)

// Phase names a step of an incident.
type Phase string

// The phases, in order.
const (
	Onset      Phase = "onset"
	Escalation Phase = "escalation"
	Mitigation Phase = "mitigation"
	Recovery   Phase = "recovery"
	Resolved   Phase = "resolved"
)

// Names of the rules this package reads (rules/incident.yml).
const (
	GroupName     = "cascade-incident"
	AlertName     = "ControlPlaneCascadeIncident"
	symptomsRule  = "cascade:incident_symptoms:active"
	oomRule       = "cascade:apiserver_oom:active"
	pressureRule  = "cascade:apiserver_memory_near_limit:active"
	unreachRule   = "cascade:apiserver_unreachable:active"
	memoryMaxRule = "cascade:apiserver_memory_utilisation:max"
)

// signalOf is the control-plane signal behind each root cause, and the
// recording rule holding when it first held in the correlation window.
var signalOf = map[string]struct{ active, first string }{
	"apiserver_oom":             {oomRule, "cascade:apiserver_oom:first_timestamp10m"},
	"apiserver_memory_pressure": {pressureRule, "cascade:apiserver_memory_near_limit:first_timestamp10m"},
	"apiserver_unreachable":     {unreachRule, "cascade:apiserver_unreachable:first_timestamp10m"},
}

// Event is one phase change of one incident.
type Event struct {
	Time      time.Time          `json:"time"`
	Cluster   string             `json:"cluster"`
	Incident  string             `json:"incident"`
	Phase     Phase              `json:"phase"`
	RootCause string             `json:"root_cause"`
	Evidence  map[string]float64 `json:"evidence,omitempty"`
}

// LokiStream returns the event as Cascade ships it to Loki: the stream's
// labels and the line (the event as JSON).
func (e Event) LokiStream() (model.LabelSet, string) {
	line, _ := json.Marshal(e) // plain fields: cannot fail
	return model.LabelSet{"source": "cascade", "kind": "incident", "cluster": model.LabelValue(e.Cluster), "phase": model.LabelValue(e.Phase)}, string(line)
}

// Sink receives every event; it must not block (internal/loki does not).
type Sink func(Event)

// state is one open incident.
type state struct {
	ID        string    `json:"id"`
	Cluster   string    `json:"cluster"`
	RootCause string    `json:"root_cause"`
	Phase     Phase     `json:"phase"`
	Since     time.Time `json:"since"`
}

// Tracker turns evaluations into events. It is safe for concurrent use.
type Tracker struct {
	query  rules.QueryFunc
	sinks  []Sink
	logger *slog.Logger
	dir    string

	mu   sync.Mutex
	open map[string]*state // by cluster
}

// Open loads the open incidents persisted in dir (created if missing).
func Open(dir string, query rules.QueryFunc, logger *slog.Logger, sinks ...Sink) (*Tracker, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("incident: %w", err)
	}
	t := &Tracker{query: query, sinks: sinks, logger: logger, dir: dir, open: map[string]*state{}}
	b, err := os.ReadFile(t.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("incident: %w", err)
	default:
		if err := json.Unmarshal(b, &t.open); err != nil {
			return nil, fmt.Errorf("incident: %s is corrupt: %w", t.statePath(), err)
		}
	}
	return t, nil
}

func (t *Tracker) statePath() string   { return filepath.Join(t.dir, "open-incidents.json") }
func (t *Tracker) journalPath() string { return filepath.Join(t.dir, "events.jsonl") }

// AfterEval is the engine hook: after the incident group is evaluated at
// ts, read its alert and the signals and record what changed.
func (t *Tracker) AfterEval(ctx context.Context, g *rules.Group, ts time.Time) {
	if g.Name() != GroupName {
		return
	}
	firing := map[string]string{} // cluster → root cause
	for _, r := range g.AlertingRules() {
		if r.Name() != AlertName {
			continue
		}
		for _, a := range r.ActiveAlerts() {
			if a.State == rules.StateFiring {
				firing[a.Labels.Get("cluster")] = a.Labels.Get("root_cause")
			}
		}
	}
	if err := t.Observe(ctx, ts, firing); err != nil {
		t.logger.Error("incident tracking", "err", err)
	}
}

// Observe records the incidents firing at ts (cluster → root cause).
func (t *Tracker) Observe(ctx context.Context, ts time.Time, firing map[string]string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var events []Event
	for cluster, cause := range firing {
		s, ok := t.open[cluster]
		if !ok {
			s = &state{ID: fmt.Sprintf("%s/%s", cluster, ts.UTC().Format(time.RFC3339)), Cluster: cluster, RootCause: cause}
			t.open[cluster] = s
			onset := ts
			if first, ok := t.value(ctx, signalOf[cause].first, cluster, ts); ok && first > 0 {
				onset = time.Unix(0, int64(first*1e9)).UTC()
			}
			events = append(events, t.event(ctx, s, Onset, onset), t.event(ctx, s, Escalation, ts))
			continue
		}
		switch s.Phase {
		case Escalation:
			if t.quiet(ctx, signalOf[s.RootCause].active, cluster, ts) {
				events = append(events, t.event(ctx, s, Mitigation, ts))
			}
		case Mitigation:
			if v, _ := t.value(ctx, symptomsRule, cluster, ts); v == 0 {
				events = append(events, t.event(ctx, s, Recovery, ts))
			}
		}
	}
	for cluster, s := range t.open {
		if _, ok := firing[cluster]; !ok {
			events = append(events, t.event(ctx, s, Resolved, ts))
			delete(t.open, cluster)
		}
	}
	if len(events) == 0 {
		return nil
	}
	if err := t.persist(events); err != nil {
		return err
	}
	for _, e := range events {
		t.logger.Info("incident phase", "cluster", e.Cluster, "incident", e.Incident, "phase", e.Phase, "root_cause", e.RootCause, "at", e.Time)
		for _, sink := range t.sinks {
			sink(e)
		}
	}
	return nil
}

// event moves s to phase p at time at, with the evidence of the moment.
func (t *Tracker) event(ctx context.Context, s *state, p Phase, at time.Time) Event {
	s.Phase, s.Since = p, at
	evidence := map[string]float64{}
	for _, rule := range []string{memoryMaxRule, "cascade:apiserver_oom_kills:increase2m", "cascade:apiserver_replicas_up:sum",
		"cascade:node_leases_not_fresh:ratio", "cascade:node_lease_watch_up:max", "cascade:gateway_kubelet_errors:rate1m"} {
		if v, ok := t.value(ctx, rule, s.Cluster, at); ok {
			evidence[rule] = v
		}
	}
	return Event{Time: at, Cluster: s.Cluster, Incident: s.ID, Phase: p, RootCause: s.RootCause, Evidence: evidence}
}

// value reads one cluster's value of a recording rule at ts; ok is false
// when absent (or at a time the rule was not evaluated, for evidence).
func (t *Tracker) value(ctx context.Context, rule, cluster string, ts time.Time) (float64, bool) {
	vec, err := t.query(ctx, fmt.Sprintf("%s{cluster=%q}", rule, cluster), ts)
	if err != nil || len(vec) == 0 {
		return 0, false
	}
	return vec[0].F, true
}

// quietFor is how long the root-cause signal must stay off before the
// incident counts as mitigated: a crash-looping API server is quiet between
// two OOM kills, and that is not a mitigation.
const quietFor = 5 * time.Minute

// quiet says whether the signal (a recording rule, 1 or absent) has not
// held at any evaluation in the last quietFor.
func (t *Tracker) quiet(ctx context.Context, rule, cluster string, ts time.Time) bool {
	vec, err := t.query(ctx, fmt.Sprintf("max_over_time(%s{cluster=%q}[%ds])", rule, cluster, int(quietFor.Seconds())), ts)
	if err != nil {
		return false
	}
	return len(vec) == 0 || vec[0].F == 0
}

// persist appends the events to the journal and rewrites the open
// incidents atomically, so a crash leaves either the old or the new state.
func (t *Tracker) persist(events []Event) error {
	f, err := os.OpenFile(t.journalPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("incident journal: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			f.Close()
			return err
		}
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("incident journal: %w", err)
	}
	b, err := json.MarshalIndent(t.open, "", "  ")
	if err != nil {
		return err
	}
	tmp := t.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("incident state: %w", err)
	}
	return os.Rename(tmp, t.statePath())
}

// Journal reads every event recorded in dir, oldest first.
func Journal(dir string) ([]Event, error) {
	f, err := os.Open(filepath.Join(dir, "events.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("events.jsonl line %d: %w", line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
