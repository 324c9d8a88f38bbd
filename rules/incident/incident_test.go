package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/rules"
)

// fakeRules answers the tracker's queries from a table of recording rule
// samples: a unit test of the phase logic alone (the engine runs the real
// rules in the backtest and end-to-end tests). A query's selector picks
// samples by name and matchers; min and sum aggregate them; range
// functions read the samples as they are now.
type fakeRules map[string][]promql.Sample

func (f fakeRules) set(rule string, value float64, lbls ...string) {
	f[rule] = append(f[rule], promql.Sample{Metric: labels.FromStrings(lbls...), F: value})
}

// drop removes the samples of rule whose label name has that value.
func (f fakeRules) drop(rule, name, value string) {
	f[rule] = slices.DeleteFunc(f[rule], func(s promql.Sample) bool { return s.Metric.Get(name) == value })
}

func (f fakeRules) query(_ context.Context, q string, _ time.Time) (promql.Vector, error) {
	expr, err := parser.ParseExpr(q)
	if err != nil {
		return nil, err
	}
	var out promql.Vector
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
	samples:
		for _, s := range f[vs.Name] {
			for _, m := range vs.LabelMatchers {
				if m.Name != labels.MetricName && !m.Matches(s.Metric.Get(m.Name)) {
					continue samples
				}
			}
			out = append(out, s)
		}
		return nil
	})
	if agg, ok := expr.(*parser.AggregateExpr); ok && len(out) > 0 {
		v := out[0].F
		for _, s := range out[1:] {
			switch agg.Op {
			case parser.MIN:
				v = math.Min(v, s.F)
			case parser.SUM:
				v += s.F
			}
		}
		out = promql.Vector{{F: v}}
	}
	return out, nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

var t0 = time.Date(2026, 11, 24, 22, 48, 0, 0, time.UTC)

func at(m float64) time.Time { return t0.Add(time.Duration(m * float64(time.Minute))) }

func prod() Firing {
	return Firing{Key: Key{Scope: ScopeCluster, Region: "eu", Cluster: "prod"}, RootCause: rules.CauseOOM}
}

func TestClusterPhases(t *testing.T) {
	dir := t.TempDir()
	fake := fakeRules{}
	var got []Event
	sink := func(e Event) { got = append(got, e) }
	tr, err := Open(dir, fake.query, discard(), sink)
	require.NoError(t, err)
	ctx := t.Context()

	// The OOM began a minute before the incident fired; another cluster of
	// the region is healthy and must not be read.
	c := []string{"region", "eu", "cluster", "prod"}
	fake.set("cascade:apiserver_oom:active", 1, c...)
	fake.set("cascade:incident_symptoms:active", 1, c...)
	fake.set("cascade:apiserver_oom:first_timestamp10m", float64(at(-1).Unix()), c...)
	fake.set("cascade:apiserver_oom:first_timestamp10m", float64(at(-9).Unix()), "region", "eu", "cluster", "other")
	fake.set("cascade:apiserver_memory_utilisation:max", 1.0, c...)
	require.NoError(t, tr.Observe(ctx, at(0), []Firing{prod()}))
	require.NoError(t, tr.Observe(ctx, at(1), []Firing{prod()}))
	require.Len(t, got, 2)
	require.Equal(t, Onset, got[0].Phase)
	require.Equal(t, at(-1), got[0].Time, "onset is when the root-cause signal began")
	require.Equal(t, Escalation, got[1].Phase)
	require.Equal(t, at(0), got[1].Time)
	require.Equal(t, 1.0, got[1].Evidence["cascade:apiserver_memory_utilisation:max"])
	require.Equal(t, ScopeCluster, got[1].Scope)
	require.Equal(t, "eu", got[1].Region)
	require.Equal(t, "prod", got[1].Cluster)
	require.Equal(t, "cluster:eu/prod@2026-11-24T22:48:00Z", got[1].Incident)

	// Restarted mid-incident: the incident is still open, nothing repeats.
	tr, err = Open(dir, fake.query, discard(), sink)
	require.NoError(t, err)
	require.NoError(t, tr.Observe(ctx, at(2), []Firing{prod()}))
	require.Len(t, got, 2)

	// Limit raised: the control plane recovers first, then the fleet.
	fake["cascade:apiserver_oom:active"] = nil
	require.NoError(t, tr.Observe(ctx, at(47), []Firing{prod()}))
	fake["cascade:incident_symptoms:active"] = nil
	require.NoError(t, tr.Observe(ctx, at(66), []Firing{prod()}))
	require.NoError(t, tr.Observe(ctx, at(76), nil))
	require.Len(t, got, 5)
	require.Equal(t, []Phase{Mitigation, Recovery, Resolved}, []Phase{got[2].Phase, got[3].Phase, got[4].Phase})
	require.Equal(t, []time.Time{at(47), at(66), at(76)}, []time.Time{got[2].Time, got[3].Time, got[4].Time})
	for _, e := range got {
		require.Equal(t, got[0].Incident, e.Incident)
		require.Equal(t, rules.CauseOOM, e.RootCause)
	}

	// The journal holds the same events, and nothing is open any more.
	journal, err := Journal(dir)
	require.NoError(t, err)
	require.Equal(t, got, journal)
	tr, err = Open(dir, fake.query, discard())
	require.NoError(t, err)
	require.Empty(t, tr.open)
}

func TestRegionalIncident(t *testing.T) {
	dir := t.TempDir()
	fake := fakeRules{}
	var got []Event
	tr, err := Open(dir, fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	ctx := t.Context()
	api := []string{"region", "fr-par", "shared", "regional-api"}
	fake.set("cascade:apiserver_oom:active", 1, api...)
	fake.set("cascade:apiserver_oom:first_timestamp10m", float64(at(-0.5).Unix()), api...)
	fake.set("cascade:region_clusters:count", 4, "region", "fr-par")
	fake.set("cascade:region_clusters_hit:count", 2, "region", "fr-par")
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(-0.25).Unix()), "region", "fr-par", "cluster", "b")
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(-0.25).Unix()), "region", "fr-par", "cluster", "a")
	fake.set("cascade:cluster_hit:active", 1, "region", "fr-par", "cluster", "a")
	fake.set("cascade:cluster_hit:active", 1, "region", "fr-par", "cluster", "b")
	// A cluster of another region is hit too: not this incident's.
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(-3).Unix()), "region", "nl-ams", "cluster", "x")

	region := Firing{Key: Key{Scope: ScopeRegion, Region: "fr-par"}, RootCause: rules.CauseOOM, Shared: "regional-api"}
	require.NoError(t, tr.Observe(ctx, at(0), []Firing{region}))
	require.Equal(t, []Phase{Onset, ClusterHit, ClusterHit, Escalation}, phases(got))
	require.Equal(t, at(-0.5), got[0].Time)
	require.Equal(t, []string{"a", "b"}, []string{got[1].Cluster, got[2].Cluster}, "hit clusters in order of time, then name")
	require.Equal(t, at(-0.25), got[1].Time)
	esc := got[3]
	require.Equal(t, "region:fr-par@2026-11-24T22:48:00Z", esc.Incident)
	require.Equal(t, []string{"a", "b"}, esc.ClustersHit)
	require.Equal(t, 4, esc.ClustersTotal)
	require.Equal(t, "regional-api", esc.Shared)
	require.Empty(t, esc.Cluster)
	require.Equal(t, 2.0, esc.Evidence["cascade:region_clusters_hit:count"])

	// A third cluster is hit, a restart in between changes nothing.
	tr, err = Open(dir, fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(1).Unix()), "region", "fr-par", "cluster", "c")
	fake.set("cascade:cluster_hit:active", 1, "region", "fr-par", "cluster", "c")
	got = nil
	require.NoError(t, tr.Observe(ctx, at(1), []Firing{region}))
	require.Equal(t, []Phase{ClusterHit}, phases(got))
	require.Equal(t, "c", got[0].Cluster)
	require.Equal(t, []string{"a", "b", "c"}, got[0].ClustersHit)

	// a recovers; the shared API is fixed; then every cluster is back.
	got = nil
	fake.drop("cascade:cluster_hit:start_timestamp", "cluster", "a")
	fake.drop("cascade:cluster_hit:active", "cluster", "a")
	fake["cascade:apiserver_oom:active"] = nil
	require.NoError(t, tr.Observe(ctx, at(20), []Firing{region}))
	require.Equal(t, []Phase{ClusterRecovered, Mitigation}, phases(got))
	require.Equal(t, "a", got[0].Cluster)
	got = nil
	fake["cascade:cluster_hit:start_timestamp"] = nil
	fake["cascade:cluster_hit:active"] = nil
	fake["cascade:region_clusters_hit:count"] = nil
	require.NoError(t, tr.Observe(ctx, at(30), []Firing{region}))
	require.NoError(t, tr.Observe(ctx, at(40), nil))
	require.Equal(t, []Phase{ClusterRecovered, ClusterRecovered, Recovery, Resolved}, phases(got))
	require.Equal(t, []string{"b", "c"}, []string{got[0].Cluster, got[1].Cluster})
}

// A common cause has no failed component: onset at the first cluster hit,
// no mitigation.
func TestRegionalCommonCause(t *testing.T) {
	fake := fakeRules{}
	var got []Event
	tr, err := Open(t.TempDir(), fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(-2).Unix()), "region", "r", "cluster", "a")
	fake.set("cascade:cluster_hit:start_timestamp", float64(at(-1).Unix()), "region", "r", "cluster", "b")
	fake.set("cascade:region_clusters_hit:count", 2, "region", "r")
	f := Firing{Key: Key{Scope: ScopeRegion, Region: "r"}, RootCause: rules.CauseRegionalCommon}
	require.NoError(t, tr.Observe(t.Context(), at(0), []Firing{f}))
	require.Equal(t, at(-2), got[0].Time)
	fake["cascade:region_clusters_hit:count"] = nil
	got = nil
	require.NoError(t, tr.Observe(t.Context(), at(10), []Firing{f}))
	require.Equal(t, Recovery, got[len(got)-1].Phase)
}

// NaN and infinities in the data are journaled, never lose the incident.
func TestNonFiniteEvidenceIsJournaled(t *testing.T) {
	dir := t.TempDir()
	fake := fakeRules{}
	c := []string{"region", "eu", "cluster", "prod"}
	fake.set("cascade:apiserver_oom:first_timestamp10m", math.NaN(), c...)
	fake.set("cascade:apiserver_memory_utilisation:max", math.NaN(), c...)
	fake.set("cascade:node_leases_not_fresh:ratio", math.Inf(1), c...)
	fake.set("cascade:gateway_kubelet_errors:rate1m", math.Inf(-1), append(c, "shared", "")...)
	var got []Event
	tr, err := Open(dir, fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	require.NoError(t, tr.Observe(t.Context(), at(0), []Firing{prod()}))
	require.Equal(t, []Phase{Onset, Escalation}, phases(got))
	require.Equal(t, at(0), got[0].Time, "a NaN onset is no onset: the page's time")
	journal, err := Journal(dir)
	require.NoError(t, err)
	require.Len(t, journal, 2)
	ev := journal[1].Evidence
	require.True(t, math.IsNaN(ev["cascade:apiserver_memory_utilisation:max"]))
	require.True(t, math.IsInf(ev["cascade:node_leases_not_fresh:ratio"], 1))
	require.True(t, math.IsInf(ev["cascade:gateway_kubelet_errors:rate1m"], -1))
	_, line := journal[1].LokiStream()
	require.Contains(t, line, `"cascade:apiserver_memory_utilisation:max":"NaN"`)
}

// A journal that cannot be written loses nothing: the sinks get every event,
// the error is returned and counted, and the events are written once the
// journal can be.
func TestJournalFailureKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	fake := fakeRules{}
	fake.set("cascade:apiserver_oom:active", 1, "region", "eu", "cluster", "prod")
	var got []Event
	tr, err := Open(dir, fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	// A directory where the journal should be: every append fails.
	require.NoError(t, os.Mkdir(filepath.Join(dir, journalFile), 0o755))
	err = tr.Observe(t.Context(), at(0), []Firing{prod()})
	require.ErrorContains(t, err, "2 events kept")
	require.Len(t, got, 2, "the sinks still get the events")
	require.Equal(t, 1.0, testutil.ToFloat64(tr.journalErrors))

	require.NoError(t, os.Remove(filepath.Join(dir, journalFile)))
	require.NoError(t, tr.Observe(t.Context(), at(1), []Firing{prod()}), "nothing new, but the pending events are written")
	journal, err := Journal(dir)
	require.NoError(t, err)
	require.Equal(t, []Phase{Onset, Escalation}, phases(journal))
	require.NoError(t, tr.Observe(t.Context(), at(2), nil))
	journal, err = Journal(dir)
	require.NoError(t, err)
	require.Equal(t, []Phase{Onset, Escalation, Resolved}, phases(journal))
}

func TestLokiStreamHasNoEmptyLabels(t *testing.T) {
	single := Event{Time: t0, Scope: ScopeCluster, Incident: "cluster:@x", Phase: Onset, RootCause: rules.CauseOOM}
	lbls, line := single.LokiStream()
	require.Equal(t, model.LabelSet{"source": "cascade", "kind": "incident", "scope": "cluster", "phase": "onset"}, lbls)
	require.NoError(t, lbls.Validate())
	var back Event
	require.NoError(t, json.Unmarshal([]byte(line), &back))
	require.Equal(t, single.Incident, back.Incident)

	hit := Event{Time: t0, Scope: ScopeRegion, Region: "fr-par", Cluster: "c1", Incident: "region:fr-par@x", Phase: ClusterHit}
	lbls, _ = hit.LokiStream()
	require.Equal(t, model.LabelSet{"source": "cascade", "kind": "incident", "scope": "region", "phase": "cluster_hit", "region": "fr-par", "cluster": "c1"}, lbls)
}

// Journals and state files of the version before scopes still read.
func TestOlderFilesStillRead(t *testing.T) {
	dir := t.TempDir()
	old := `{"time":"2026-01-14T22:48:30Z","cluster":"demo","incident":"demo/2026-01-14T22:48:30Z","phase":"escalation","root_cause":"apiserver_oom","evidence":{"cascade:apiserver_replicas_up:sum":0}}` + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, journalFile), []byte(old), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"demo":{"id":"demo/2026-01-14T22:48:30Z","cluster":"demo","root_cause":"apiserver_oom","phase":"escalation","since":"2026-01-14T22:48:30Z"}}`), 0o644))
	journal, err := Journal(dir)
	require.NoError(t, err)
	require.Equal(t, ScopeCluster, journal[0].Scope)
	require.Equal(t, "demo", journal[0].Cluster)
	fake := fakeRules{}
	fake.set("cascade:apiserver_oom:active", 1, "cluster", "demo")
	var got []Event
	tr, err := Open(dir, fake.query, discard(), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	// The open incident is the same one: no second onset, it resolves.
	f := Firing{Key: Key{Scope: ScopeCluster, Cluster: "demo"}, RootCause: rules.CauseOOM}
	require.NoError(t, tr.Observe(t.Context(), at(0), []Firing{f}))
	require.Empty(t, got)
	require.NoError(t, tr.Observe(t.Context(), at(1), nil))
	require.Equal(t, []Phase{Resolved}, phases(got))
	require.Equal(t, "demo/2026-01-14T22:48:30Z", got[0].Incident)
}

func TestCorruptStateIsAnError(t *testing.T) {
	for _, content := range []string{"{not json", `[{"phase":"onset"}]`} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), []byte(content), 0o644))
		_, err := Open(dir, fakeRules{}.query, discard())
		require.ErrorContains(t, err, "is corrupt")
	}
}

func TestReadJournalNamesTheBadLine(t *testing.T) {
	_, err := ReadJournal(strings.NewReader("{\"phase\":\"onset\"}\n\n{broken\n"))
	require.ErrorContains(t, err, "line 3")
}

func TestEvidenceJSONRoundTrip(t *testing.T) {
	in := Evidence{"a": 0.5, "b": math.NaN(), "c": math.Inf(1), "d": math.Inf(-1), "e": 1e300}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.Equal(t, `{"a":0.5,"b":"NaN","c":"+Inf","d":"-Inf","e":1e+300}`, string(b))
	var out Evidence
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, 0.5, out["a"])
	require.True(t, math.IsNaN(out["b"]))
	require.True(t, math.IsInf(out["c"], 1) && math.IsInf(out["d"], -1))
	require.Error(t, json.Unmarshal([]byte(`{"a":"lots"}`), &out))
}

// FuzzReadJournal: whatever the journal holds, reading it never panics, and
// what it reads writes back to lines that read the same.
func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-14T22:48:30Z","scope":"region","region":"r","incident":"x","phase":"cluster_hit","evidence":{"a":"NaN","b":1}}` + "\n"))
	f.Add([]byte(`{"time":"2026-01-14T22:48:30Z","cluster":"demo","incident":"demo/x","phase":"onset","root_cause":"apiserver_oom"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := ReadJournal(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, e := range events {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("an event read back cannot be written: %v", err)
			}
			buf.Write(append(b, '\n'))
		}
		again, err := ReadJournal(&buf)
		if err != nil {
			t.Fatalf("written events do not read back: %v", err)
		}
		if len(again) != len(events) {
			t.Fatalf("%d events, then %d", len(events), len(again))
		}
	})
}

func phases(events []Event) []Phase {
	var out []Phase
	for _, e := range events {
		out = append(out, e.Phase)
	}
	return out
}
