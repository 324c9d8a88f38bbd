// Package report writes the post-incident timeline: from an incident's
// events (a backtest's output, or the journal of `cascade run`) and the
// alerts around it, a Markdown table in the shape of a public post-mortem
// (time, what happened, evidence values) with time-to-detect and
// time-to-recover. A program writes it, not a person at 3 a.m.
package report

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

// ReadEvents reads JSON lines: a backtest's `--format json` output (alert
// and incident transitions), or the events.jsonl journal of `cascade run`
// (incident events only). A bad line is an error naming it.
func ReadEvents(r io.Reader) ([]backtest.Transition, error) {
	var out []backtest.Transition
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var probe struct {
			Kind  string `json:"kind"`
			Phase string `json:"phase"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		var t backtest.Transition
		switch {
		case probe.Kind != "":
			if err := json.Unmarshal(b, &t); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		case probe.Phase != "":
			var e incident.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			t = backtest.FromIncidentEvent(e)
		default:
			return nil, fmt.Errorf("line %d: neither a backtest transition (kind) nor an incident event (phase)", line)
		}
		if t.Time.IsZero() {
			return nil, fmt.Errorf("line %d: no time", line)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNoEvents
	}
	slices.SortStableFunc(out, func(a, b backtest.Transition) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// Options shape a report.
type Options struct {
	// Location is the time zone of the table (default UTC).
	Location *time.Location
	// Truth, if set, adds the injected faults and measures detection from
	// the first fault (the first OOM kill when there is one).
	Truth *scenario.Truth
}

// Write writes one report per incident found in events; with none, it
// says so (and still lists the alerts).
func Write(w io.Writer, events []backtest.Transition, o Options) error {
	loc := cmp.Or(o.Location, time.UTC)
	incidents := map[string][]backtest.Transition{}
	var order []string
	for _, e := range events {
		if e.Kind != backtest.KindIncident {
			continue
		}
		if _, ok := incidents[e.Incident]; !ok {
			order = append(order, e.Incident)
		}
		incidents[e.Incident] = append(incidents[e.Incident], e)
	}
	if len(order) == 0 {
		_, err := fmt.Fprintf(w, "# No incident\n\nNo ControlPlaneCascadeIncident in these events (%d alert transitions).\n", len(events))
		return err
	}
	for i, id := range order {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := writeOne(w, id, incidents[id], events, loc, o.Truth); err != nil {
			return err
		}
	}
	return nil
}

// causes name each root cause for people.
var causes = map[string]string{
	"apiserver_oom":             "API server OOM",
	"apiserver_memory_pressure": "API server memory pressure",
	"apiserver_unreachable":     "API server unreachable",
}

// row is one line of the timeline.
type row struct {
	at       time.Time
	what     string
	evidence string
}

func writeOne(w io.Writer, id string, phases []backtest.Transition, all []backtest.Transition, loc *time.Location, truth *scenario.Truth) error {
	first, last := phases[0], phases[len(phases)-1]
	cluster, cause := first.Labels["cluster"], first.RootCause
	from := first.Time.Add(-30 * time.Minute)
	to := last.Time
	if last.Phase != string(incident.Resolved) {
		to = time.Unix(math.MaxInt32, 0)
	}

	var rows []row
	at := map[incident.Phase]time.Time{}
	for _, p := range phases {
		at[incident.Phase(p.Phase)] = p.Time
		rows = append(rows, row{p.Time, phaseText(p), evidenceText(p.Evidence)})
	}
	// The alerts of the same cluster around the incident: the first time
	// each fired, and the last time each resolved.
	firstFiring, lastResolved := map[string]backtest.Transition{}, map[string]backtest.Transition{}
	for _, e := range all {
		if e.Kind != backtest.KindAlert || e.Name == incident.AlertName || e.Labels["cluster"] != cluster || e.Time.Before(from) || e.Time.After(to) {
			continue
		}
		switch e.State {
		case "firing":
			if _, ok := firstFiring[e.Name]; !ok {
				firstFiring[e.Name] = e
			}
		case "inactive":
			if _, ok := firstFiring[e.Name]; ok {
				lastResolved[e.Name] = e
			}
		}
	}
	for name, e := range firstFiring {
		rows = append(rows, row{e.Time, fmt.Sprintf("alert %s fires%s", name, about(e.Labels)), ""})
	}
	for name, e := range lastResolved {
		rows = append(rows, row{e.Time, fmt.Sprintf("alert %s resolved%s", name, about(e.Labels)), ""})
	}
	start := at[incident.Onset]
	if truth != nil {
		for _, e := range truth.Events {
			if e.Time.Before(from) || e.Time.After(to) {
				continue
			}
			what := "injected: " + e.Name
			if e.Detail != "" {
				what += " (" + e.Detail + ")"
			}
			rows = append(rows, row{e.Time, what, ""})
		}
		if oom, ok := truth.Event(scenario.FirstOOM); ok {
			start = oom.Time
		} else if len(truth.Events) > 0 {
			start = truth.Events[0].Time
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })

	name := cmp.Or(causes[cause], cause)
	fmt.Fprintf(w, "# Incident %s: %s\n\n", id, name)
	fmt.Fprintf(w, "Cluster `%s`, root cause `%s`. Times in %s. Written by `cascade report` from the incident's events.\n\n", cluster, cause, loc)
	fmt.Fprintln(w, "| time | what happened | evidence |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.at.In(loc).Format("15:04:05"), r.what, r.evidence)
	}
	fmt.Fprintln(w)
	since := "the onset"
	if truth != nil {
		since = "the first fault"
		if _, ok := truth.Event(scenario.FirstOOM); ok {
			since = "the first OOM kill"
		}
	}
	if esc, ok := at[incident.Escalation]; ok {
		fmt.Fprintf(w, "- Time to detect: %s (from %s at %s to the page at %s)\n", esc.Sub(start).Round(time.Second), since, start.In(loc).Format("15:04:05"), esc.In(loc).Format("15:04:05"))
	}
	if rec, ok := at[incident.Recovery]; ok {
		fmt.Fprintf(w, "- Time to recover: %s (from %s to the recovery of nodes and gateway at %s)\n", rec.Sub(start).Round(time.Second), since, rec.In(loc).Format("15:04:05"))
	} else {
		fmt.Fprintln(w, "- Time to recover: not recovered in these events")
	}
	if mit, ok := at[incident.Mitigation]; ok {
		fmt.Fprintf(w, "- Control plane mitigated at %s, %s after %s\n", mit.In(loc).Format("15:04:05"), mit.Sub(start).Round(time.Second), since)
	}
	return nil
}

func phaseText(p backtest.Transition) string {
	switch incident.Phase(p.Phase) {
	case incident.Onset:
		return fmt.Sprintf("**onset**: the root-cause signal (%s) began", p.RootCause)
	case incident.Escalation:
		return fmt.Sprintf("**escalation**: ControlPlaneCascadeIncident pages, root cause %s", cmp.Or(causes[p.RootCause], p.RootCause))
	case incident.Mitigation:
		return "**mitigation**: the root-cause signal has been quiet for 5 minutes"
	case incident.Recovery:
		return "**recovery**: node leases and the gateway are healthy again"
	case incident.Resolved:
		return "**resolved**: the incident alert ended"
	}
	return p.Phase
}

// about names what an alert is about beyond its cluster.
func about(l map[string]string) string {
	if r := l["replica"]; r != "" {
		return " (" + r + ")"
	}
	return ""
}

// evidence names each recording rule in the events' evidence.
var evidence = []struct {
	rule   string
	format func(float64) string
}{
	{"cascade:apiserver_memory_utilisation:max", func(v float64) string { return fmt.Sprintf("API memory %.0f %% of limit", v*100) }},
	{"cascade:apiserver_oom_kills:increase2m", func(v float64) string { return fmt.Sprintf("OOM kills in 2 min: %.0f", v) }},
	{"cascade:apiserver_replicas_up:sum", func(v float64) string { return fmt.Sprintf("replicas answering: %.0f", v) }},
	{"cascade:node_lease_watch_up:max", func(v float64) string {
		if v == 1 {
			return "lease watch up"
		}
		return "lease watch down"
	}},
	{"cascade:node_leases_not_fresh:ratio", func(v float64) string { return fmt.Sprintf("leases late or expired: %.0f %%", v*100) }},
	{"cascade:gateway_kubelet_errors:rate1m", func(v float64) string { return fmt.Sprintf("kubelet requests failing: %.1f/s", v) }},
}

func evidenceText(values map[string]float64) string {
	var parts []string
	for _, e := range evidence {
		if v, ok := values[e.rule]; ok {
			parts = append(parts, e.format(v))
		}
	}
	return strings.Join(parts, "; ")
}

// ErrNoEvents is returned for an empty input.
var ErrNoEvents = errors.New("no events in the input")
