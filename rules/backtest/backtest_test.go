package backtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

// result is what a backtest of a scenario found.
type result struct {
	truth       scenario.Truth
	transitions []Transition
	summary     Summary
}

func backtestScenario(t *testing.T, name string, o scenario.Options) result {
	t.Helper()
	var data bytes.Buffer
	truth, err := scenario.Generate(&data, name, o)
	require.NoError(t, err)
	r := result{truth: truth}
	r.summary, err = Run(t.Context(), &data, Options{}, func(tr Transition) { r.transitions = append(r.transitions, tr) })
	require.NoError(t, err)
	return r
}

// first returns the first transition matching, or false.
func (r result) first(match func(Transition) bool) (Transition, bool) {
	for _, tr := range r.transitions {
		if match(tr) {
			return tr, true
		}
	}
	return Transition{}, false
}

func (r result) phases() []string {
	var out []string
	for _, tr := range r.transitions {
		if tr.Kind == KindIncident {
			out = append(out, string(tr.Event.Phase))
		}
	}
	return out
}

func firing(name string) func(Transition) bool {
	return func(tr Transition) bool { return tr.Kind == KindAlert && tr.Name == name && tr.State == "firing" }
}

// The incident scenarios at 15 s scrape and evaluation intervals: the page
// comes at most 60 s after the first OOM kill, once, naming the OOM; the
// early warning comes 5 minutes or more before it; the guard holds while
// the leases expire.
func TestIncidentScenariosAreDetected(t *testing.T) {
	for _, name := range []string{"incident", "incident-autoheal"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The rules read the aggregate lease series only: the per-node
			// ones are left out to keep the race-detector run quick (the
			// detection bench backtests them too).
			r := backtestScenario(t, name, scenario.Options{Nodes: 500, NoPerNodeSeries: true})
			oom, ok := r.truth.Event(scenario.FirstOOM)
			require.True(t, ok)

			page, ok := r.first(firing(rules.IncidentAlert))
			require.True(t, ok, "the incident fires")
			require.Equal(t, "apiserver_oom", page.Labels["root_cause"])
			delay := page.Time.Sub(oom.Time)
			require.True(t, delay >= 0 && delay <= 60*time.Second, "paged %s after the first OOM kill", delay)
			require.Equal(t, 1, r.summary.Notifications[rules.IncidentAlert], "one page")
			require.Equal(t, []string{"onset", "escalation", "mitigation", "recovery", "resolved"}, r.phases())

			warn, ok := r.first(firing(rules.MemoryExhaustionPredictedAlert))
			require.True(t, ok, "the early warning fires")
			require.GreaterOrEqual(t, oom.Time.Sub(warn.Time), 5*time.Minute, "early warning at %s, OOM at %s", warn.Time, oom.Time)

			guard, ok := r.first(firing(rules.GuardAlert))
			require.True(t, ok, "the auto-heal guard comes on")
			leases, ok := r.first(firing("NodeLeasesExpiringFleetWide"))
			require.True(t, ok)
			require.False(t, guard.Time.After(leases.Time), "the guard is on by the time leases expire fleet-wide")
			requireSymptomsFireOnce(t, r)
			t.Logf("%s: first OOM %s, early warning %s before, page %s after", name, oom.Time.Format(time.TimeOnly), oom.Time.Sub(warn.Time), delay)
		})
	}
}

// Every single-cluster lookalike, at 500 and at 5,000 nodes: no incident,
// no guard (the regional ones: TestRegionalScenarios).
func TestLookalikesOpenNoIncident(t *testing.T) {
	for _, info := range scenario.List() {
		if info.Incident || info.Regional {
			continue
		}
		for _, nodes := range []int{500, 5000} {
			t.Run(fmt.Sprintf("%s/%d", info.Name, nodes), func(t *testing.T) {
				t.Parallel()
				// The rules read the aggregate lease series only; leaving
				// the per-node ones out keeps the runs quick.
				r := backtestScenario(t, info.Name, scenario.Options{Nodes: nodes, NoPerNodeSeries: true})
				tr, fired := r.first(firing(rules.IncidentAlert))
				require.False(t, fired, "false incident: %+v", tr)
				require.Empty(t, r.phases())
				tr, guarded := r.first(firing(rules.GuardAlert))
				require.False(t, guarded, "the guard must stay off: %+v", tr)
				require.Zero(t, r.summary.Notifications[rules.GuardAlert])
			})
		}
	}
}

func TestTSDBIsKeptAsBlocks(t *testing.T) {
	var data bytes.Buffer
	_, err := scenario.Generate(&data, "incident", scenario.Options{Nodes: 20})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "tsdb")
	_, err = Run(t.Context(), &data, Options{TSDBPath: dir}, func(Transition) {})
	require.NoError(t, err)
	metas, err := filepath.Glob(filepath.Join(dir, "*", "meta.json"))
	require.NoError(t, err)
	require.Len(t, metas, 1, "one block holding everything")
	db, err := tsdb.OpenDBReadOnly(dir, "", nil)
	require.NoError(t, err)
	defer db.Close()
	blocks, err := db.Blocks()
	require.NoError(t, err)
	require.Len(t, blocks, 1)
	meta := blocks[0].Meta()
	require.Greater(t, meta.MinTime, int64(0), "the block covers the data's span")
	require.Greater(t, meta.MaxTime, meta.MinTime)
	q, err := db.Querier(meta.MinTime, meta.MaxTime)
	require.NoError(t, err)
	defer q.Close()
	for _, name := range []string{"cascade_node_leases", "cascade:node_leases_not_fresh:ratio", "ALERTS", "ALERTS_FOR_STATE"} {
		ss := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
		require.True(t, ss.Next(), "%s is in the kept TSDB", name)
	}

	_, err = Run(t.Context(), strings.NewReader("# EOF\n"), Options{TSDBPath: dir}, func(Transition) {})
	require.ErrorContains(t, err, "not empty", "an existing TSDB is never overwritten")
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

// Bad input is rejected with its line, and nothing is emitted.
func TestBadInputIsRejectedWithItsLine(t *testing.T) {
	good := "# TYPE up gauge\nup{job=\"a\"} 1 1000\nup{job=\"a\"} 1 1015\n# EOF\n"
	full := gzipped(good)
	for _, c := range []struct{ name, in, want string }{
		{"unsorted", "# TYPE up gauge\nup{job=\"a\"} 1 1000\nup{job=\"a\"} 1 990\n# EOF\n", "line 3: sample of {__name__=\"up\", job=\"a\"} at 990000 is not after"},
		{"duplicate", "up{job=\"a\"} 1 1000\nup{job=\"a\"} 2 1000\n# EOF\n", "line 2: sample of"},
		{"unknown type", "# TYPE up wibble\nup 1 1000\n# EOF\n", "line 1: "},
		{"no timestamp", "# TYPE up gauge\nup 1\n# EOF\n", "line 2: sample without a timestamp"},
		{"truncated", "# TYPE up gauge\nup 1 1000\n", "line 2: the file is truncated: it does not end with # EOF"},
		{"truncated mid-line", "# TYPE up gauge\nup 1 10", "line 2: the file is truncated"},
		{"data after EOF", good + "up 1 2000\n", "line 5: data after # EOF"},
		{"garbage", "# TYPE up gauge\nup{job=} 1 1000\n# EOF\n", "line 2: "},
		{"truncated gzip", full[:len(full)-12], "unexpected EOF"},
		{"no samples", "# EOF\n", "no samples"},
		{"empty file", "", "the data is empty"},
		{"empty gzip", gzipped(""), "the data is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			emitted := 0
			_, err := Run(t.Context(), strings.NewReader(c.in), Options{}, func(Transition) { emitted++ })
			require.ErrorContains(t, err, c.want)
			require.NotContains(t, err.Error(), "line 0", "there is no line 0")
			require.Zero(t, emitted)
		})
	}
	_, err := Run(t.Context(), strings.NewReader(full), Options{}, func(Transition) {})
	require.NoError(t, err, "gzip is read as such")
}

// Lines past the first chunk keep their numbers, and a family split across
// chunks keeps its type.
func TestLineNumbersAcrossChunks(t *testing.T) {
	var b strings.Builder
	b.WriteString("# TYPE requests counter\n")
	n := 0
	for b.Len() < 2*chunkBytes+1000 {
		n++
		fmt.Fprintf(&b, "requests_total{i=\"%d\"} %d 1000\n", n, n)
	}
	b.WriteString("requests_total{i=\"1\"} 5 999\n# EOF\n")
	_, err := Run(t.Context(), strings.NewReader(b.String()), Options{}, func(Transition) {})
	require.ErrorContains(t, err, fmt.Sprintf("line %d: ", n+2))
}

func TestCancelStopsTheRun(t *testing.T) {
	var data bytes.Buffer
	_, err := scenario.Generate(&data, "node-failure", scenario.Options{Nodes: 20})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	_, err = Run(ctx, &data, Options{Progress: func(p Progress) {
		if p.Stage == "evaluate" && p.Step == 10 {
			cancel()
		}
	}}, func(Transition) {})
	require.ErrorIs(t, err, context.Canceled)
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("# TYPE up gauge\nup{job=\"a\"} 1 1000\nup{job=\"a\"} 0 1015\n# EOF\n"))
	f.Add([]byte("# TYPE r counter\nr_total 1 1\nr_created 1 1\n# EOF\n"))
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1 1\nh_count 1 1\nh_sum 2 1\n# EOF\n"))
	f.Add([]byte(gzipped("up 1 1\n# EOF\n")))
	f.Fuzz(func(t *testing.T, in []byte) {
		var app countingAppendable
		stats, err := load(t.Context(), bytes.NewReader(in), &app, 15000, nil)
		if err == nil && stats.Samples+stats.StaleMarkers != app.appended {
			t.Fatalf("loaded %d samples and %d stale markers, appended %d", stats.Samples, stats.StaleMarkers, app.appended)
		}
	})
}

// countingAppendable counts appends: the fuzz target tests the parser, not
// the TSDB (which the other tests use).
type countingAppendable struct{ appended int }

func (c *countingAppendable) Appender(context.Context) storage.Appender {
	return &countingAppender{c: c}
}

type countingAppender struct {
	storage.Appender
	c       *countingAppendable
	pending int
}

func (a *countingAppender) Append(_ storage.SeriesRef, _ labels.Labels, _ int64, _ float64) (storage.SeriesRef, error) {
	a.pending++
	return 0, nil
}
func (a *countingAppender) Commit() error   { a.c.appended += a.pending; a.pending = 0; return nil }
func (a *countingAppender) Rollback() error { a.pending = 0; return nil }

// The regional scenarios at 20 clusters: the seed's outage and its sequel
// page once, as one regional incident naming the shared API's OOM, at most
// 60 s after its first OOM kill, with the guard on in every hit cluster and
// no cluster incident; the lookalikes open no regional incident (one of
// them a cluster incident of its own).
func TestRegionalScenarios(t *testing.T) {
	for _, info := range scenario.List() {
		if !info.Regional {
			continue
		}
		t.Run(info.Name, func(t *testing.T) {
			t.Parallel()
			r := backtestScenario(t, info.Name, scenario.Options{Clusters: 20, NoPerNodeSeries: true})
			var escalations []*incident.Event
			hit := map[string]bool{}
			for _, tr := range r.transitions {
				if tr.Kind != KindIncident {
					continue
				}
				switch tr.Event.Phase {
				case incident.Escalation:
					escalations = append(escalations, tr.Event)
				case incident.ClusterHit:
					hit[tr.Event.Cluster] = true
				}
			}
			guarded := map[string]bool{}
			for _, tr := range r.transitions {
				if tr.Kind == KindAlert && tr.Name == rules.GuardAlert && tr.State == "firing" && tr.Labels["scope"] == "cluster" {
					guarded[tr.Labels["cluster"]] = true
				}
			}
			if !r.truth.ExpectIncident {
				require.Empty(t, escalations, "no incident in a lookalike")
				require.Empty(t, guarded, "no guard in a lookalike")
				return
			}
			require.Len(t, escalations, 1, "one incident")
			requireSymptomsFireOnce(t, r)
			e := escalations[0]
			require.Equal(t, incident.Scope(r.truth.Scope), e.Scope)
			require.Equal(t, r.truth.RootCause, e.RootCause)
			require.Equal(t, 1, r.summary.Notifications[rules.IncidentAlert], "one page")
			for _, c := range r.truth.ClustersHit {
				require.True(t, guarded[c], "the guard comes on in hit cluster %s", c)
			}
			if r.truth.Scope == scenario.ScopeCluster {
				require.Equal(t, r.truth.Cluster, e.Cluster)
				require.Equal(t, map[string]bool{r.truth.Cluster: true}, guarded, "the guard only where the control plane fails")
				return
			}
			require.Equal(t, r.truth.Shared, e.Shared)
			oom, ok := r.truth.Event(scenario.FirstOOM)
			require.True(t, ok)
			delay := e.Time.Sub(oom.Time)
			require.True(t, delay >= 0 && delay <= 60*time.Second, "paged %s after the shared API's first OOM kill", delay)
			for _, c := range r.truth.ClustersHit {
				require.True(t, hit[c], "the incident records cluster %s as hit", c)
			}
			require.Len(t, hit, len(r.truth.ClustersHit), "no cluster hit that the fault did not hit")
			t.Logf("%s: paged %s after the first OOM, %d of %d clusters hit", info.Name, delay, len(hit), r.truth.Clusters)
		})
	}
}

// Two rules of one name (the guard per cluster and per region) each keep
// their alerts: no alert of one is taken for resolved because the other
// does not have it.
func TestRulesSharingANameKeepTheirAlerts(t *testing.T) {
	r := backtestScenario(t, "regional-outage", scenario.Options{Clusters: 6, Nodes: 10, NoPerNodeSeries: true})
	episodes := map[string]int{}
	for _, tr := range r.transitions {
		if tr.Kind == KindAlert && tr.Name == rules.GuardAlert && tr.State == "firing" {
			episodes[fmt.Sprint(tr.Labels)]++
		}
	}
	require.NotEmpty(t, episodes)
	for lbls, n := range episodes {
		require.Equal(t, 1, n, "guard %s fired %d times", lbls, n)
	}
}

// requireSymptomsFireOnce fails t when a symptom alert (the same labels)
// fires more than once during one incident, from its onset to its end: a
// symptom that holds through an incident (leases hidden while the API
// server crash-loops between OOM kills) must not flap.
func requireSymptomsFireOnce(t *testing.T, r result) {
	t.Helper()
	type window struct{ from, to time.Time }
	var incidents []window
	for _, tr := range r.transitions {
		if tr.Kind != KindIncident {
			continue
		}
		switch tr.Event.Phase {
		case incident.Onset:
			incidents = append(incidents, window{from: tr.Event.Time, to: r.summary.End})
		case incident.Resolved:
			incidents[len(incidents)-1].to = tr.Time
		}
	}
	require.NotEmpty(t, incidents)
	checked := 0
	for _, w := range incidents {
		episodes := map[string]int{}
		for _, tr := range r.transitions {
			if tr.Kind == KindAlert && tr.Labels["cascade_symptom"] == "true" && tr.State == "firing" && !tr.Time.Before(w.from) && !tr.Time.After(w.to) {
				episodes[tr.Name+fmt.Sprint(tr.Labels)]++
			}
		}
		for alert, n := range episodes {
			require.Equal(t, 1, n, "%s fired %d times in one incident", alert, n)
		}
		checked += len(episodes)
	}
	require.Positive(t, checked, "symptom alerts fire during the incident")
}

// NaN in the data (an exporter's working set) is evidence like any value:
// the incident is journaled with all its events, never lost to a JSON
// encoder that refuses NaN.
func TestNaNInTheDataKeepsTheIncident(t *testing.T) {
	var data bytes.Buffer
	truth, err := scenario.Generate(&data, "incident", scenario.Options{Nodes: 60, NoPerNodeSeries: true})
	require.NoError(t, err)
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(data.String(), "\n") {
		if strings.HasPrefix(line, "cascade_apiserver_memory_working_set_bytes{") {
			// value and timestamp: keep the timestamp, make the value NaN
			fields := strings.Fields(line)
			line = fields[0] + " NaN " + fields[2] + "\n"
		}
		out.WriteString(line)
	}
	var phases []string
	_, err = Run(t.Context(), &out, Options{}, func(tr Transition) {
		if tr.Kind == KindIncident {
			phases = append(phases, string(tr.Event.Phase))
		}
	})
	require.NoError(t, err)
	require.Equal(t, []string{"onset", "escalation", "mitigation", "recovery", "resolved"}, phases, "truth: %s", truth.RootCause)
}

// Two alerting rules of one name (the incident per cluster and per region)
// are one alert name, not one alert: the one that fires steadily fires
// once, and is not marked inactive by its sibling that has nothing.
func TestRulesSharingAnAlertName(t *testing.T) {
	dir := t.TempDir()
	ruleFile := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(ruleFile, []byte(`groups:
  - name: g
    rules:
      - alert: Same
        expr: x > 0
        labels: {scope: cluster}
      - alert: Same
        expr: y > 0
        labels: {scope: region}
`), 0o644))
	var data strings.Builder
	for i := range 20 {
		fmt.Fprintf(&data, "x 1 %d\n", 1_700_000_000+15*i)
	}
	data.WriteString("# EOF\n")
	var got []string
	_, err := Run(t.Context(), strings.NewReader(data.String()), Options{RuleFiles: []string{ruleFile}}, func(tr Transition) {
		got = append(got, tr.State+" "+tr.Labels["scope"])
	})
	require.NoError(t, err)
	require.Equal(t, []string{"firing cluster"}, got)
}
