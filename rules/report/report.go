// Package report writes the post-incident timeline: from an incident's
// events (a backtest's output, or the journal of `cascade run`) and the
// alerts around it, a Markdown table in the shape of a public post-mortem
// (time, what happened, evidence values) with time-to-detect and
// time-to-recover, and for a regional incident when each cluster was hit
// and recovered. A program writes it, not a person at 3 a.m.
package report

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
)

// Input is what a report is written from: incident events, and the alert
// transitions around them (a backtest has them; a live journal does not).
type Input struct {
	Incidents []incident.Event
	Alerts    []backtest.Transition
}

// ErrNoEvents is returned for an input without any event.
var ErrNoEvents = errors.New("no events in the input")

// maxLine bounds one input line: a regional incident's events list the
// clusters it hit.
const maxLine = 16 << 20

// ReadEvents reads JSON lines: a backtest's `--format json` output (alert
// transitions and incident events), or the events.jsonl journal of
// `cascade run` (incident events only). A bad line is an error naming it.
func ReadEvents(r io.Reader) (Input, error) {
	var in Input
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var probe struct {
			Kind  string `json:"kind"`
			Phase string `json:"phase"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			return Input{}, fmt.Errorf("line %d: %w", line, err)
		}
		switch {
		case probe.Kind == backtest.KindAlert:
			var t backtest.Transition
			if err := json.Unmarshal(b, &t); err != nil {
				return Input{}, fmt.Errorf("line %d: %w", line, err)
			}
			if t.Time.IsZero() {
				return Input{}, fmt.Errorf("line %d: no time", line)
			}
			in.Alerts = append(in.Alerts, t)
		case probe.Kind == backtest.KindIncident:
			var t backtest.Transition
			if err := json.Unmarshal(b, &t); err != nil {
				return Input{}, fmt.Errorf("line %d: %w", line, err)
			}
			if t.Event == nil {
				return Input{}, fmt.Errorf("line %d: an incident transition without its event (a backtest output of an older version: run the backtest again)", line)
			}
			if err := in.addIncident(*t.Event); err != nil {
				return Input{}, fmt.Errorf("line %d: %w", line, err)
			}
		case probe.Kind == "" && probe.Phase != "":
			var e incident.Event
			if err := json.Unmarshal(b, &e); err != nil {
				return Input{}, fmt.Errorf("line %d: %w", line, err)
			}
			if err := in.addIncident(e); err != nil {
				return Input{}, fmt.Errorf("line %d: %w", line, err)
			}
		default:
			return Input{}, fmt.Errorf("line %d: neither a backtest transition (kind) nor an incident event (phase)", line)
		}
	}
	if err := sc.Err(); err != nil {
		return Input{}, err
	}
	if len(in.Incidents) == 0 && len(in.Alerts) == 0 {
		return Input{}, ErrNoEvents
	}
	slices.SortStableFunc(in.Incidents, func(a, b incident.Event) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(in.Alerts, func(a, b backtest.Transition) int { return a.Time.Compare(b.Time) })
	return in, nil
}

func (in *Input) addIncident(e incident.Event) error {
	if e.Time.IsZero() {
		return errors.New("no time")
	}
	if e.Incident == "" {
		return errors.New("an incident event without an incident id")
	}
	e.Normalize()
	in.Incidents = append(in.Incidents, e)
	return nil
}

// Fault is something injected into a scenario, from its ground truth.
type Fault struct {
	Time   time.Time `json:"time"`
	Name   string    `json:"name"`
	Detail string    `json:"detail,omitempty"`
}

// FirstOOM is the fault detection is measured from when there is one.
const FirstOOM = "first_oom"

// ReadFaults reads the injected faults from a scenario's ground truth
// (`cascade scenario --truth`): its "events".
func ReadFaults(r io.Reader) ([]Fault, error) {
	var truth struct {
		Events []Fault `json:"events"`
	}
	if err := json.NewDecoder(r).Decode(&truth); err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	for i, f := range truth.Events {
		if f.Time.IsZero() || f.Name == "" {
			return nil, fmt.Errorf("ground truth: event %d has no time or no name", i+1)
		}
	}
	return truth.Events, nil
}

// Options shape a report.
type Options struct {
	// Location is the time zone of the table (default UTC).
	Location *time.Location
	// Faults, if set, are the injected faults: they join the timeline, and
	// detection is measured from the first OOM kill (or the first fault).
	Faults []Fault
}

// Write writes one report per incident in the input; with none, it says so.
func Write(w io.Writer, in Input, o Options) error {
	loc := cmp.Or(o.Location, time.UTC)
	incidents := map[string][]incident.Event{}
	var order []string
	for _, e := range in.Incidents {
		if _, ok := incidents[e.Incident]; !ok {
			order = append(order, e.Incident)
		}
		incidents[e.Incident] = append(incidents[e.Incident], e)
	}
	bw := bufio.NewWriter(w)
	if len(order) == 0 {
		fmt.Fprintf(bw, "# No incident\n\nNo %s in these events (%d alert transitions).\n", rules.IncidentAlert, len(in.Alerts))
		return bw.Flush()
	}
	for i, id := range order {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		writeOne(bw, id, incidents[id], in.Alerts, loc, o.Faults)
	}
	return bw.Flush()
}

// causes name each root cause for people.
var causes = map[string]string{
	rules.CauseOOM:            "API server OOM",
	rules.CauseMemoryPressure: "API server memory pressure",
	rules.CauseUnreachable:    "API server unreachable",
	rules.CauseRegionalCommon: "a common cause across the region",
}

// row is one line of the timeline.
type row struct {
	at       time.Time
	what     string
	evidence string
}

// clusterTimes is when one cluster of a regional incident was hit and
// recovered (zero: not in the events).
type clusterTimes struct {
	name           string
	hit, recovered time.Time
}

func writeOne(w io.Writer, id string, events []incident.Event, alerts []backtest.Transition, loc *time.Location, faults []Fault) {
	first, last := events[0], events[len(events)-1]
	from := first.Time.Add(-30 * time.Minute)
	to := time.Unix(math.MaxInt32, 0)
	if last.Phase == incident.Resolved {
		to = last.Time
	}
	at := map[incident.Phase]time.Time{}
	var rows []row
	var clusters []*clusterTimes
	byName := map[string]*clusterTimes{}
	for _, e := range events {
		switch e.Phase {
		case incident.ClusterHit, incident.ClusterRecovered:
			c := byName[e.Cluster]
			if c == nil {
				c = &clusterTimes{name: e.Cluster}
				byName[e.Cluster] = c
				clusters = append(clusters, c)
			}
			if e.Phase == incident.ClusterHit && c.hit.IsZero() {
				c.hit = e.Time
			}
			if e.Phase == incident.ClusterRecovered {
				c.recovered = e.Time
			}
		default:
			if _, ok := at[e.Phase]; !ok {
				at[e.Phase] = e.Time
			}
			rows = append(rows, row{e.Time, phaseText(e), evidenceText(e.Evidence)})
		}
	}
	rows = append(rows, clusterRows(clusters)...)
	rows = append(rows, alertRows(first, alerts, from, to)...)
	start, since := at[incident.Onset], "the onset"
	for _, f := range faults {
		if f.Time.Before(from) || f.Time.After(to) {
			continue
		}
		what := "injected: " + cell(f.Name)
		if f.Detail != "" {
			what += " (" + cell(f.Detail) + ")"
		}
		rows = append(rows, row{f.Time, what, ""})
	}
	if len(faults) > 0 {
		start, since = faults[0].Time, "the first fault"
		for _, f := range faults {
			if f.Time.Before(start) {
				start = f.Time
			}
		}
		for _, f := range faults {
			if f.Name == FirstOOM {
				start, since = f.Time, "the first OOM kill"
				break
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })

	name := cmp.Or(causes[first.RootCause], first.RootCause)
	if first.Scope == incident.ScopeRegion {
		if first.Shared != "" {
			name = "shared " + first.Shared + ": " + name
		}
		fmt.Fprintf(w, "# Regional incident %s: %s\n\n", oneLine(id), oneLine(name))
		fmt.Fprintf(w, "Region %s", code(first.Region))
		if first.Shared != "" {
			fmt.Fprintf(w, ", shared component %s failed first", code(first.Shared))
		}
		hit, total := map[string]bool{}, 0
		for _, e := range events {
			for _, c := range e.ClustersHit {
				hit[c] = true
			}
			total = max(total, e.ClustersTotal)
		}
		for _, c := range clusters {
			hit[c.name] = true
		}
		fmt.Fprintf(w, ", root cause %s. Clusters hit: %d", code(first.RootCause), len(hit))
		if total > 0 {
			fmt.Fprintf(w, " of %d", total)
		}
		fmt.Fprintf(w, ". Times in %s. Written by `cascade report` from the incident's events.\n\n", loc)
	} else {
		fmt.Fprintf(w, "# Incident %s: %s\n\n", oneLine(id), oneLine(name))
		fmt.Fprintf(w, "Cluster %s", code(first.Cluster))
		if first.Region != "" {
			fmt.Fprintf(w, " of region %s", code(first.Region))
		}
		fmt.Fprintf(w, ", root cause %s. Times in %s. Written by `cascade report` from the incident's events.\n\n", code(first.RootCause), loc)
	}
	fmt.Fprintln(w, "| time | what happened | evidence |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.at.In(loc).Format("15:04:05"), r.what, r.evidence)
	}
	fmt.Fprintln(w)
	clock := func(t time.Time) string { return t.In(loc).Format("15:04:05") }
	esc, escaped := at[incident.Escalation]
	switch {
	case !escaped:
	case start.IsZero():
		fmt.Fprintf(w, "- Time to detect: unknown (no onset in these events; the page at %s)\n", clock(esc))
	default:
		fmt.Fprintf(w, "- Time to detect: %s (from %s at %s to the page at %s)\n", esc.Sub(start).Round(time.Second), since, clock(start), clock(esc))
	}
	rec, recovered := at[incident.Recovery]
	switch {
	case !recovered:
		fmt.Fprintln(w, "- Time to recover: not recovered in these events")
	case start.IsZero():
		fmt.Fprintf(w, "- Time to recover: unknown (no onset in these events; nodes and gateway recovered at %s)\n", clock(rec))
	default:
		fmt.Fprintf(w, "- Time to recover: %s (from %s to the recovery of nodes and gateway at %s)\n", rec.Sub(start).Round(time.Second), since, clock(rec))
	}
	if mit, ok := at[incident.Mitigation]; ok && !start.IsZero() {
		fmt.Fprintf(w, "- Control plane mitigated at %s, %s after %s\n", clock(mit), mit.Sub(start).Round(time.Second), since)
	}
	if len(clusters) > 0 {
		fmt.Fprintf(w, "\n## Clusters hit\n\n| cluster | hit | recovered |\n|---|---|---|\n")
		for _, c := range clusters {
			rec := "not in these events"
			if !c.recovered.IsZero() {
				rec = clock(c.recovered)
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", cell(c.name), clock(c.hit), rec)
		}
	}
}

// clusterRows summarise a regional incident's clusters in the timeline:
// the first and last hit and recovered (the table below has them all).
func clusterRows(clusters []*clusterTimes) []row {
	var hits, recs []*clusterTimes
	for _, c := range clusters {
		if !c.hit.IsZero() {
			hits = append(hits, c)
		}
		if !c.recovered.IsZero() {
			recs = append(recs, c)
		}
	}
	slices.SortStableFunc(hits, func(a, b *clusterTimes) int { return a.hit.Compare(b.hit) })
	slices.SortStableFunc(recs, func(a, b *clusterTimes) int { return a.recovered.Compare(b.recovered) })
	var out []row
	if len(hits) > 0 {
		out = append(out, row{hits[0].hit, fmt.Sprintf("first cluster hit: %s", cell(hits[0].name)), ""})
	}
	if len(hits) > 1 {
		h := hits[len(hits)-1]
		out = append(out, row{h.hit, fmt.Sprintf("cluster %s hit, %d in all", cell(h.name), len(hits)), ""})
	}
	if len(recs) > 0 {
		out = append(out, row{recs[0].recovered, fmt.Sprintf("first cluster recovered: %s", cell(recs[0].name)), ""})
	}
	if len(recs) > 1 {
		r := recs[len(recs)-1]
		out = append(out, row{r.recovered, fmt.Sprintf("cluster %s recovered, %d in all", cell(r.name), len(recs)), ""})
	}
	return out
}

// alertRows are the alerts around the incident, in its scope (the cluster;
// or the region, its clusters and shared components): the first time each
// fired and the last time each resolved, with how many things it was about.
func alertRows(inc incident.Event, alerts []backtest.Transition, from, to time.Time) []row {
	inScope := func(l map[string]string) bool {
		if l["region"] != inc.Region {
			return false
		}
		return inc.Scope == incident.ScopeRegion || l["cluster"] == inc.Cluster && l["shared"] == ""
	}
	type span struct {
		first, last backtest.Transition
		about       map[string]bool
		resolved    bool
	}
	spans := map[string]*span{}
	var names []string
	for _, e := range alerts {
		if e.Name == rules.IncidentAlert || e.Time.Before(from) || e.Time.After(to) || !inScope(e.Labels) {
			continue
		}
		s := spans[e.Name]
		switch e.State {
		case "firing":
			if s == nil {
				s = &span{first: e, about: map[string]bool{}}
				spans[e.Name] = s
				names = append(names, e.Name)
			}
			s.about[about(e.Labels)] = true
		case "inactive":
			if s != nil {
				s.last, s.resolved = e, true
			}
		}
	}
	var out []row
	for _, name := range names {
		s := spans[name]
		what := fmt.Sprintf("alert %s fires", name)
		if len(s.about) > 1 {
			what += fmt.Sprintf(" (%d of them)", len(s.about))
		} else if a := about(s.first.Labels); a != "" {
			what += " (" + cell(a) + ")"
		}
		out = append(out, row{s.first.Time, what, ""})
		if s.resolved {
			out = append(out, row{s.last.Time, fmt.Sprintf("alert %s resolved", name), ""})
		}
	}
	return out
}

func phaseText(e incident.Event) string {
	switch e.Phase {
	case incident.Onset:
		if e.Scope == incident.ScopeRegion && e.Shared == "" {
			return "**onset**: the first cluster was hit"
		}
		return fmt.Sprintf("**onset**: the root-cause signal (%s) began", cell(e.RootCause))
	case incident.Escalation:
		return fmt.Sprintf("**escalation**: %s pages, root cause %s", rules.IncidentAlert, cell(cmp.Or(causes[e.RootCause], e.RootCause)))
	case incident.Mitigation:
		return "**mitigation**: the root-cause signal has been quiet for 5 minutes"
	case incident.Recovery:
		return "**recovery**: node leases and the gateway are healthy again"
	case incident.Resolved:
		return "**resolved**: the incident alert ended"
	}
	return cell(string(e.Phase))
}

// about names what an alert is about: its cluster, shared component and
// replica.
func about(l map[string]string) string {
	var parts []string
	if c := l["cluster"]; c != "" {
		parts = append(parts, c)
	}
	if s := l["shared"]; s != "" {
		parts = append(parts, "shared "+s)
	}
	if r := l["replica"]; r != "" {
		parts = append(parts, r)
	}
	return strings.Join(parts, " ")
}

// evidence names each recording rule in the events' evidence.
var evidence = []struct {
	rule   string
	format func(float64) string
}{
	{rules.MemoryUtilisation, func(v float64) string { return fmt.Sprintf("API memory %.0f %% of limit", v*100) }},
	{rules.OOMKills, func(v float64) string { return fmt.Sprintf("OOM kills in 2 min: %.0f", v) }},
	{rules.ReplicasUp, func(v float64) string { return fmt.Sprintf("replicas answering: %.0f", v) }},
	{rules.LeaseWatchUp, func(v float64) string {
		if v == 1 {
			return "lease watch up"
		}
		return "lease watch down"
	}},
	{rules.LeasesNotFresh, func(v float64) string { return fmt.Sprintf("leases late or expired: %.0f %%", v*100) }},
	{rules.RegionClustersHit, func(v float64) string { return fmt.Sprintf("clusters hit: %.0f", v) }},
	{rules.RegionClusters, func(v float64) string { return fmt.Sprintf("clusters in the region: %.0f", v) }},
	{rules.KubeletErrors, func(v float64) string { return fmt.Sprintf("kubelet requests failing: %.1f/s", v) }},
}

func evidenceText(values incident.Evidence) string {
	var parts []string
	for _, e := range evidence {
		v, ok := values[e.rule]
		switch {
		case !ok:
		case math.IsNaN(v) || math.IsInf(v, 0):
			parts = append(parts, fmt.Sprintf("%s: %v", e.rule, v))
		default:
			parts = append(parts, e.format(v))
		}
	}
	return cell(strings.Join(parts, "; "))
}

// oneLine keeps a name on one line of Markdown.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// cell makes s safe in a table cell: one line, pipes escaped.
func cell(s string) string { return strings.ReplaceAll(oneLine(s), "|", `\|`) }

// code shows s as inline code on one line, whatever backticks it holds.
func code(s string) string {
	s = oneLine(s)
	if s == "" {
		return `""`
	}
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}
