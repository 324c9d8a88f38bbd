package dashboards

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	imagecolor "image/color"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/dashboards/picture"
	"github.com/cascade-sre/cascade/internal/loki"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

var regionPicturePath = flag.String("region-picture", "", "also write the regional overview over the regional outage to this PNG (make dashboards-picture)")

// TestRegionalDashboardShowsRegionalIncident backtests the seed's regional
// outage (20 clusters, the shared regional API OOM-killed, three quarters
// of the clusters hit) into a TSDB, serves it with Debian's Prometheus and
// runs every query of the regional overview over it: each panel returns
// data; the incident panel shows the regional incident with its root cause
// and the shared component, from the first OOM on; the clusters hit and
// their states are the scenario's; the incident events panel's selector
// finds the backtest's events in a Loki-protocol store. The cluster
// overview of a hit cluster shows the regional incident and the guard, and
// never the shared API's memory. With -region-picture it draws the
// regional overview from those results.
func TestRegionalDashboardShowsRegionalIncident(t *testing.T) {
	testenv.RequireLong(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bt := backtestScenario(ctx, t, "regional-outage", scenario.Options{Clusters: 20, NoPerNodeSeries: true})
	truth := bt.truth
	require.Equal(t, scenario.ScopeRegion, truth.Scope)
	require.Equal(t, "apiserver_oom", truth.RootCause)
	require.Equal(t, "regional-api", truth.Shared)
	require.NotEmpty(t, truth.Region)
	oom, ok := truth.Event(scenario.FirstOOM)
	require.True(t, ok)
	t.Logf("regional-outage %s, region %s: %d clusters, %d hit, first shared OOM %s", truth.Start.Format(time.RFC3339), truth.Region, truth.Clusters, len(truth.ClustersHit), oom.Time.Format("15:04:05"))

	vars := windowVars(truth, map[string]string{RegionVar: truth.Region})
	results := queryDashboards(ctx, t, bt, func(uid string) bool { return uid == RegionUID }, vars)
	panel := func(title string) *panelResult {
		r := results[RegionUID+"/"+title]
		require.NotNil(t, r, "no panel %q", title)
		return r
	}

	// The regional incident: scope region, the scenario's root cause and
	// shared component, firing within minutes of the first OOM, not before.
	inc := panel(RegionIncidentPanel)
	require.Equal(t, regionIncident, inc.queries[0].Expr)
	require.NotEmpty(t, inc.series[0], "the incident panel does not show the regional incident")
	var firing []time.Time
	for _, s := range inc.series[0] {
		require.Equal(t, map[string]string{"scope": "region", "root_cause": truth.RootCause, "shared": truth.Shared}, s.Metric)
		for _, v := range s.Values {
			if v[1] == "1" {
				firing = append(firing, sampleTime(v))
			}
		}
	}
	require.NotEmpty(t, firing)
	require.False(t, firing[0].Before(oom.Time.Add(-time.Minute)), "regional incident shown at %s, before the first OOM at %s", firing[0], oom.Time)
	require.True(t, firing[0].Before(oom.Time.Add(5*time.Minute)), "regional incident shown only at %s, first OOM at %s", firing[0], oom.Time)
	require.True(t, anyValue(inc.series[1], "1"), "the regional guard never came on")
	t.Logf("incident panel: %s %s from %s to %s", truth.RootCause, truth.Shared, firing[0].Format("15:04:05"), firing[len(firing)-1].Format("15:04:05"))

	// Clusters hit against clusters of the region.
	hit := panel(RegionClustersHitPanel)
	require.Len(t, hit.series[0], 1, "clusters hit is one series, 0 while none is hit")
	require.Equal(t, "0", hit.series[0][0].Values[0][1], "no cluster hit at the start")
	require.Equal(t, float64(len(truth.ClustersHit)), maxValue(hit.series[0]), "most clusters hit at once")
	require.Equal(t, float64(truth.Clusters), maxValue(hit.series[1]), "clusters of the region")

	// Each cluster's state: every hit cluster hit with its guard on at some
	// point, no other cluster ever hit.
	each := panel(RegionClusterEachPanel)
	require.Len(t, each.series[0], truth.Clusters)
	for _, s := range each.series[0] {
		c, one := s.Metric["cluster"], []testenv.RangeSeries{s}
		if slices.Contains(truth.ClustersHit, c) {
			require.True(t, anyValue(one, "3"), "cluster %s never shown hit with its guard on", c)
		} else {
			require.False(t, anyValue(one, "1") || anyValue(one, "3"), "cluster %s is not hit in the scenario but shown hit", c)
		}
	}

	// The memory panel shows the shared API only, with its OOM kills.
	mem := panel(RegionSharedMemoryPanel)
	for _, s := range mem.series[0] {
		require.Equal(t, truth.Shared, s.Metric["shared"])
	}
	require.NotEmpty(t, mem.series[1], "no OOM kill shown")

	// The picture, from the same results.
	writePicture(t, regionPicture(results, truth), *regionPicturePath, 1000, 1200)

	// The events panel: its selector finds, in a Loki-protocol store, every
	// event of the regional incident the backtest shipped (what `cascade
	// run` ships), and only those.
	var want []incident.Event
	for _, e := range bt.events {
		if e.Scope == incident.ScopeRegion && e.Region == truth.Region {
			want = append(want, e)
		}
	}
	require.NotEmpty(t, want)
	got := lokiEvents(ctx, t, bt.events, regionEventsSelector, vars, len(want))
	require.Len(t, got, len(want))
	phases := map[incident.Phase]int{}
	for _, e := range got {
		phases[e.Phase]++
		if e.Phase == incident.Onset {
			require.Equal(t, truth.RootCause, e.RootCause)
			require.Equal(t, truth.Shared, e.Shared)
		}
	}
	require.Equal(t, 1, phases[incident.Onset], "phases %v", phases)
	require.Equal(t, len(truth.ClustersHit), phases[incident.ClusterHit], "phases %v", phases)

	// The cluster overview of a hit cluster: the regional incident with its
	// root cause and the guard on; and with no cluster chosen (a single
	// unlabelled cluster), never the shared API's memory.
	hitVars := windowVars(truth, map[string]string{ClusterVar: truth.ClustersHit[0], RegionVar: truth.Region, "instance": ".*"})
	ov, _ := queryPanels(ctx, t, bt, func(q Query) bool { return q.Dashboard == OverviewUID && q.Panel == IncidentPanel }, hitVars)
	ovInc := ov[OverviewUID+"/"+IncidentPanel]
	require.Empty(t, ovInc.series[0], "the cluster's own API server is healthy: no cluster incident")
	require.NotEmpty(t, ovInc.series[1], "the cluster overview does not show its region's incident")
	for _, s := range ovInc.series[1] {
		require.Equal(t, truth.RootCause, s.Metric["root_cause"])
		require.Equal(t, truth.Shared, s.Metric["shared"])
	}
	require.True(t, anyValue(ovInc.series[2], "1"), "the hit cluster's guard never shown on")
	noCluster := windowVars(truth, map[string]string{ClusterVar: "", RegionVar: ".*", "instance": ".*"})
	ovMem, _ := queryPanels(ctx, t, bt, func(q Query) bool {
		return (q.Dashboard == OverviewUID && q.Panel == MemoryPanel) || q.Dashboard == APIServerUID
	}, noCluster)
	for key, r := range ovMem {
		for i, s := range r.series {
			require.Empty(t, s, "%s shows the shared components' series for a cluster: %s", key, r.queries[i].Expr)
		}
	}
}

// lokiEvents ships events as `cascade run` does (rules/incident's stream
// labels, internal/loki's sender) to VictoriaLogs, and returns the events
// that the stream selector, with vars, finds once want of them have arrived.
func lokiEvents(ctx context.Context, t *testing.T, events []incident.Event, selector string, vars map[string]string, want int) []incident.Event {
	t.Helper()
	logs := testenv.VictoriaLogsForTest(t)
	cfg := loki.DefaultConfig()
	cfg.URL = logs.LokiPushURL()
	cfg.Component = "incident"
	cfg.BatchWait = 100 * time.Millisecond
	sender, err := loki.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	for _, e := range events {
		labels, line := e.LokiStream()
		require.True(t, sender.Send(labels, e.Time, line))
	}
	require.NoError(t, sender.Close(ctx))

	sel, err := Expand(selector, vars)
	require.NoError(t, err)
	var lines []map[string]string
	require.Eventually(t, func() bool {
		lines, err = logs.Query(ctx, sel)
		return err == nil && len(lines) >= want
	}, 30*time.Second, 250*time.Millisecond, "the selector %s found %d of %d events (%v)", sel, len(lines), want, err)
	var out []incident.Event
	for _, l := range lines {
		var e incident.Event
		require.NoError(t, json.Unmarshal([]byte(l["_msg"]), &e))
		out = append(out, e)
	}
	return out
}

func maxValue(ss []testenv.RangeSeries) float64 {
	m := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			m = max(m, sampleValue(v))
		}
	}
	return m
}

// regionPicture turns the regional overview's query results into the
// stacked panels of the picture, as the dashboard draws them.
func regionPicture(results map[string]*panelResult, truth scenario.Truth) picture.Picture {
	get := func(title string) *panelResult { return results[RegionUID+"/"+title] }
	incident := statesPanel(RegionIncidentPanel, get(RegionIncidentPanel))
	incident.Height = 0.35

	hitPanel := get(RegionClustersHitPanel)
	hit := picture.Panel{Title: RegionClustersHitPanel, YLabel: "clusters", Height: 0.8}
	hit.Series = append(pictureSeries(hitPanel, 0, func(n string) picture.Series { return picture.Series{Name: n, Color: picture.Red} }),
		pictureSeries(hitPanel, 1, func(n string) picture.Series { return picture.Series{Name: n, Color: picture.Grey, Dashed: true} })...)

	// Clusters by state, stacked as the dashboard's overrides name and
	// colour them: hit ones at the bottom.
	byState := map[string]picture.Series{}
	for _, s := range pictureSeries(get(RegionClusterStatesPanel), 0, plainSeries) {
		byState[s.Name] = s
	}
	states := picture.Panel{Title: RegionClusterStatesPanel, YLabel: "clusters", Kind: picture.Stacked}
	for _, st := range []struct {
		value, name string
		color       imagecolor.Color
	}{{"3", "hit, guard on", picture.Red}, {"1", "hit, guard OFF", picture.Orange}, {"2", "guard on", picture.Purple}, {"0", "not hit", picture.Green}} {
		if s, ok := byState[st.value]; ok {
			s.Name, s.Color = st.name, st.color
			states.Series = append(states.Series, s)
		}
	}

	// The shared API's replicas as a share of their limit, OOM kills as
	// points on the limit.
	memPanel := get(RegionSharedMemoryPanel)
	memory := picture.Panel{Title: RegionSharedMemoryPanel, YLabel: "share of the limit", Height: 1.2}
	memory.Series = pictureSeries(memPanel, 0, plainSeries)
	for _, s := range pictureSeries(memPanel, 1, oneLegend("OOM kill", picture.Series{Dots: true, Color: picture.Red})) {
		for i := range s.Points {
			s.Points[i].V = 1
		}
		memory.Series = append(memory.Series, s)
	}

	gwPanel := get("Kubelet requests failing at the shared gateway")
	gateway := picture.Panel{Title: "Kubelet requests failing at the shared gateway, by code", YLabel: "requests/s", Height: 1.2}
	gateway.Series = append(pictureSeries(gwPanel, 0, plainSeries),
		pictureSeries(gwPanel, 3, func(n string) picture.Series { return picture.Series{Name: n, Color: picture.Grey, Dashed: true} })...)

	return picture.Picture{
		Title: fmt.Sprintf("Cascade region, regional-outage scenario (region %s, %d clusters of %d nodes): the shared API OOM-killed, %d clusters' kubelets refused",
			truth.Region, truth.Clusters, truth.Nodes, len(truth.ClustersHit)),
		Start:    truth.Start,
		End:      truth.End,
		Location: time.FixedZone("CET", 3600),
		Panels:   []picture.Panel{incident, hit, states, memory, gateway},
	}
}
