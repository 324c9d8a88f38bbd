// Package backtest runs Cascade's rule files over recorded series: it loads
// OpenMetrics text with timestamps (what `promtool tsdb create-blocks-from
// openmetrics` reads) into a TSDB, evaluates every rule group at the rule
// interval over the whole span with the same engine as `cascade run`, and
// reports every alert transition and incident event with its time.
package backtest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/engine"
	"github.com/cascade-sre/cascade/rules/incident"
)

// Kinds of transition.
const (
	KindAlert    = "alert"
	KindIncident = "incident"
)

// Transition is an alert changing state, or an incident event (a phase
// change, or a regional incident's cluster hit or recovered). As a JSON
// line it is what `cascade backtest --format json` prints and `cascade
// report` reads.
type Transition struct {
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Name  string    `json:"name"`
	State string    `json:"state"`
	// Labels are the alert's; for an incident event, what it is about and
	// its root cause, without the empty ones.
	Labels map[string]string `json:"labels,omitempty"`
	// Event is the incident event itself, for KindIncident.
	Event *incident.Event `json:"event,omitempty"`
}

// Options configure a backtest.
type Options struct {
	// RuleFiles are rule files or globs (see engine.RuleFiles); empty means
	// the embedded ones.
	RuleFiles []string
	// Interval is the evaluation interval (default 15 s).
	Interval time.Duration
	// ScrapeInterval is the interval the data was scraped at, for staleness
	// (default: Interval).
	ScrapeInterval time.Duration
	// TSDBPath keeps the TSDB (raw series, recording rules, ALERTS) there as
	// blocks a Prometheus can open; empty uses a temporary one.
	TSDBPath string
	// Progress, if set, is told how loading goes, and is called after
	// every evaluation step (it may pace the run: the demo does).
	Progress func(Progress)
	// AfterEval, if set, runs after each group's evaluation, as the live
	// engine's hook does.
	AfterEval engine.EvalHook
	// Notify, if set, receives the alerts the engine would send to
	// Alertmanager, as its notifier would.
	Notify promrules.NotifyFunc
	Logger *slog.Logger
}

// Progress is where a backtest stands.
type Progress struct {
	Stage       string // "load" or "evaluate"
	Load        LoadStats
	Step, Steps int
	Time        time.Time // of the step just evaluated
}

// Summary is what a backtest found.
type Summary struct {
	Load  LoadStats
	Steps int
	Start time.Time
	End   time.Time
	// Notifications counts the distinct firing alerts the engine would have
	// sent to Alertmanager, by alert name: resends of the same alert are
	// one notification, as Alertmanager deduplicates them.
	Notifications map[string]int
	EvalDuration  time.Duration
	LoadDuration  time.Duration
}

// maxSpan is the longest data a backtest takes: the TSDB holds it in one
// block range.
const maxSpan = 7 * 24 * time.Hour

// Run loads data and evaluates the rules over it, handing every transition
// to emit, evaluation by evaluation. An incident's onset carries the time
// its root-cause signal began, which can be an evaluation or two before the
// one that found it. Nothing is emitted unless the whole input loads.
func Run(ctx context.Context, data io.Reader, opts Options, emit func(Transition)) (Summary, error) {
	opts.Interval = cmp.Or(opts.Interval, 15*time.Second)
	opts.ScrapeInterval = cmp.Or(opts.ScrapeInterval, opts.Interval)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	progress := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}

	dir := opts.TSDBPath
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cascade-backtest-")
		if err != nil {
			return Summary{}, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return Summary{}, fmt.Errorf("TSDB directory %s is not empty", dir)
	}
	db, err := openTSDB(dir, opts.Logger)
	if err != nil {
		return Summary{}, err
	}
	defer db.Close()

	var sum Summary
	began := time.Now()
	sum.Load, err = load(ctx, data, db, opts.ScrapeInterval.Milliseconds(), func(s LoadStats) {
		progress(Progress{Stage: "load", Load: s})
	})
	if err != nil {
		return sum, err
	}
	sum.LoadDuration = time.Since(began)
	if span := time.Duration(sum.Load.MaxTime-sum.Load.MinTime) * time.Millisecond; span > maxSpan {
		return sum, fmt.Errorf("the data spans %s; a backtest takes at most %s", span, maxSpan)
	}

	notified := map[string]map[string]bool{} // alert name → firing alert identities
	off, err := engine.NewOffline(engine.OfflineOptions{
		Storage: db, DefaultRules: rules.Files(), Files: opts.RuleFiles, Interval: opts.Interval, Logger: opts.Logger,
		Notify: func(ctx context.Context, expr string, alerts ...*promrules.Alert) {
			if opts.Notify != nil {
				opts.Notify(ctx, expr, alerts...)
			}
			for _, a := range alerts {
				if a.State != promrules.StateFiring {
					continue
				}
				name := a.Labels.Get(labels.AlertName)
				if notified[name] == nil {
					notified[name] = map[string]bool{}
				}
				notified[name][fmt.Sprintf("%s@%d", a.Labels, a.ActiveAt.UnixMilli())] = true
			}
		},
	})
	if err != nil {
		return sum, err
	}

	journal, err := os.MkdirTemp("", "cascade-backtest-incidents-")
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(journal)
	var incidents []incident.Event
	tracker, err := incident.Open(journal, off.QueryFunc(), opts.Logger, func(e incident.Event) { incidents = append(incidents, e) })
	if err != nil {
		return sum, err
	}

	interval := opts.Interval.Milliseconds()
	first := (sum.Load.MinTime + interval - 1) / interval * interval
	sum.Start = time.UnixMilli(first).UTC()
	sum.End = time.UnixMilli(sum.Load.MaxTime).UTC()
	sum.Steps = int((sum.Load.MaxTime-first)/interval) + 1
	began = time.Now()
	states := map[string]*alertState{} // by alert labels
	for step := range sum.Steps {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		ts := time.UnixMilli(first + int64(step)*interval).UTC()
		var batch []Transition
		off.Eval(ctx, ts, func(ctx context.Context, g *promrules.Group, ts time.Time) {
			batch = append(batch, alertTransitions(g, ts, states)...)
			tracker.AfterEval(ctx, g, ts)
			if opts.AfterEval != nil {
				opts.AfterEval(ctx, g, ts)
			}
		})
		for _, e := range incidents {
			batch = append(batch, FromIncidentEvent(e))
		}
		incidents = incidents[:0]
		slices.SortStableFunc(batch, func(a, b Transition) int { return a.Time.Compare(b.Time) })
		for _, t := range batch {
			emit(t)
		}
		progress(Progress{Stage: "evaluate", Load: sum.Load, Step: step + 1, Steps: sum.Steps, Time: ts})
	}
	sum.EvalDuration = time.Since(began)
	sum.Notifications = map[string]int{}
	for name, ids := range notified {
		sum.Notifications[name] = len(ids)
	}
	if opts.TSDBPath != "" {
		head := db.Head()
		if err := db.CompactHead(tsdb.NewRangeHead(head, head.MinTime(), head.MaxTime()+1)); err != nil {
			return sum, fmt.Errorf("write the TSDB blocks: %w", err)
		}
		// An empty WAL, so read-only tools (promtool tsdb) open it too.
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

func openTSDB(dir string, logger *slog.Logger) (*tsdb.DB, error) {
	o := tsdb.DefaultOptions()
	o.WALSegmentSize = -1 // nothing to recover: the data is reloaded each time
	// One block range holds the whole span, so series written family by
	// family (not in global time order) are all appendable.
	o.MinBlockDuration = 2 * maxSpan.Milliseconds()
	o.MaxBlockDuration = o.MinBlockDuration
	o.RetentionDuration = 0
	db, err := tsdb.Open(dir, logger.With("component", "tsdb"), nil, o, nil)
	if err != nil {
		return nil, fmt.Errorf("open the TSDB in %s: %w", dir, err)
	}
	db.DisableCompactions()
	return db, nil
}

// alertState is an alert's last state, by its labels. Its rule is the
// rule itself: two rules may share a name (the incident per cluster and per
// region).
type alertState struct {
	rule   *promrules.AlertingRule
	state  string
	labels map[string]string
}

// alertTransitions compares the group's alerts with their last states. An
// alert gone from its rules (a pending alert that stopped matching, or a
// resolved one past retention) ends as inactive if it was not already.
// Several rules may share an alert name (the incident per cluster and per
// region): an alert is present when any rule of the group has it.
func alertTransitions(g *promrules.Group, ts time.Time, states map[string]*alertState) []Transition {
	var out []Transition
	present := map[string]bool{}
	names := map[string]bool{}
	for _, r := range g.AlertingRules() {
		names[r.Name()] = true
		for _, a := range r.ActiveAlerts() {
			id := a.Labels.String()
			present[id] = true
			state := a.State.String()
			last, ok := states[id]
			if !ok {
				last = &alertState{rule: r, state: "inactive", labels: a.Labels.Map()}
				states[id] = last
			}
			if last.state != state {
				last.state = state
				out = append(out, Transition{Time: ts, Kind: KindAlert, Name: r.Name(), State: state, Labels: last.labels})
			}
		}
		for id, last := range states {
			if last.rule == r && !present[id] && last.state != "inactive" {
				last.state = "inactive"
				out = append(out, Transition{Time: ts, Kind: KindAlert, Name: r.Name(), State: "inactive", Labels: last.labels})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Transition) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(fmt.Sprint(a.Labels), fmt.Sprint(b.Labels)))
	})
	return out
}

// FromIncidentEvent turns an incident event into a transition.
func FromIncidentEvent(e incident.Event) Transition {
	lbls := map[string]string{}
	for k, v := range map[string]string{"scope": string(e.Scope), "region": e.Region, "cluster": e.Cluster, "shared": e.Shared, "root_cause": e.RootCause} {
		if v != "" {
			lbls[k] = v
		}
	}
	return Transition{Time: e.Time, Kind: KindIncident, Name: rules.IncidentAlert, State: string(e.Phase), Labels: lbls, Event: &e}
}
