package dashboards

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/vg"

	"github.com/cascade-sre/cascade/dashboards/picture"
	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

var picturePath = flag.String("picture", "", "also write the overview over the incident window to this PNG (make dashboards-picture)")

// liveOnly are the panels of the incident dashboards whose series the
// scenarios do not simulate; TestDashboardsLive shows them with data from a
// real `cascade run` instead, as it does for the whole cascade-self
// dashboard.
var liveOnly = map[string]bool{
	"cascade-node-leases/Watch errors": true,
}

// panelResult is what one panel's queries returned.
type panelResult struct {
	queries []Query
	series  [][]testenv.RangeSeries // by query
}

// TestDashboardsShowIncident backtests the incident scenario (50 nodes)
// with the embedded rules into a TSDB, serves it with Debian's Prometheus,
// and runs every panel query of the incident dashboards through its query
// API over the incident window: each panel returns data, and the
// overview's incident panel shows the incident with its root cause while
// it happens. With -picture it draws the overview from those results.
func TestDashboardsShowIncident(t *testing.T) {
	testenv.RequireLong(t)
	run := runIncident(t)
	truth, results := run.truth, run.results
	oom, _ := truth.Event(scenario.FirstOOM)

	// The incident panel: ControlPlaneCascadeIncident with the scenario's root
	// cause, firing within minutes of the first OOM and not before it.
	inc := results[OverviewUID+"/"+IncidentPanel]
	require.NotNil(t, inc)
	require.Equal(t, incidentByRootCause, inc.queries[0].Expr)
	var firing []time.Time
	for _, s := range inc.series[0] {
		require.Equal(t, truth.RootCause, s.Metric["root_cause"])
		for _, v := range s.Values {
			if v[1] == "1" {
				firing = append(firing, sampleTime(v))
			}
		}
	}
	require.NotEmpty(t, firing, "the incident panel does not show the incident")
	require.False(t, firing[0].Before(oom.Time.Add(-time.Minute)), "incident shown at %s, before the first OOM at %s", firing[0], oom.Time)
	require.True(t, firing[0].Before(oom.Time.Add(5*time.Minute)), "incident shown only at %s, first OOM at %s", firing[0], oom.Time)
	t.Logf("incident panel: %s from %s to %s", truth.RootCause, firing[0].Format("15:04:05"), firing[len(firing)-1].Format("15:04:05"))
	require.Equal(t, regionalIncidentOfCluster, inc.queries[1].Expr)
	require.Empty(t, inc.series[1], "a single cluster's incident shows as a regional one")
	guard := inc.series[2]
	require.NotEmpty(t, guard)
	if truth.ExpectGuard {
		require.True(t, anyValue(guard, "1"), "the auto-heal guard never came on")
	}

	// The picture, from the same results.
	writePicture(t, overviewPicture(results, truth, run.start, run.end), *picturePath, 1000, 1100)
}

// incidentRun is the incident scenario backtested and queried.
type incidentRun struct {
	truth      scenario.Truth
	start, end time.Time
	results    map[string]*panelResult // by "uid/panel title"
}

// runIncident backtests the incident scenario into a TSDB, serves it with
// Prometheus and runs every Prometheus query of the incident dashboards of
// a cluster over the scenario; each panel must return data.
func runIncident(t *testing.T) incidentRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bt := backtestScenario(ctx, t, "incident", scenario.Options{Nodes: 50})
	truth := bt.truth
	oom, ok := truth.Event(scenario.FirstOOM)
	require.True(t, ok)
	recovered, ok := truth.Event(scenario.Recovered)
	require.True(t, ok)
	t.Logf("incident scenario %s, cluster %q, %d nodes: first OOM %s, recovered %s", truth.Start.Format(time.RFC3339), truth.Cluster, truth.Nodes, oom.Time.Format("15:04:05"), recovered.Time.Format("15:04:05"))
	vars := windowVars(truth, map[string]string{ClusterVar: truth.Cluster, RegionVar: ".*", "instance": ".*"})
	clusterDashboards := func(uid string) bool { return uid != SelfUID && uid != RegionUID }
	results := queryDashboards(ctx, t, bt, clusterDashboards, vars)
	return incidentRun{truth: truth, start: truth.Start, end: truth.End, results: results}
}

// backtested is a scenario backtested with the embedded rules into a TSDB
// that Prometheus serves.
type backtested struct {
	truth scenario.Truth
	prom  *testenv.Prometheus
	// events are the incident events the backtest found, as `cascade run`
	// would ship them to Loki.
	events []incident.Event
}

// backtestScenario generates a scenario, backtests it into a TSDB (raw
// series, recording rules, ALERTS) and serves that with Debian's
// Prometheus. The scenario must open its incident.
func backtestScenario(ctx context.Context, t *testing.T, name string, opts scenario.Options) backtested {
	t.Helper()
	var data bytes.Buffer
	truth, err := scenario.Generate(&data, name, opts)
	require.NoError(t, err)
	require.True(t, truth.ExpectIncident)
	tsdbDir := filepath.Join(t.TempDir(), "tsdb")
	var events []incident.Event
	began := time.Now()
	sum, err := backtest.Run(ctx, &data, backtest.Options{TSDBPath: tsdbDir}, func(tr backtest.Transition) {
		if tr.Kind == backtest.KindIncident && tr.Event != nil {
			events = append(events, *tr.Event)
		}
	})
	require.NoError(t, err)
	require.NotZero(t, sum.Notifications["ControlPlaneCascadeIncident"], "the backtest found no incident to show")
	t.Logf("%s backtested in %s (%d steps, %d series)", name, time.Since(began).Round(time.Millisecond), sum.Steps, sum.Load.Series)
	prom := testenv.PrometheusOnForTest(t, "global: {scrape_interval: 15s}\n", tsdbDir)
	return backtested{truth: truth, prom: prom, events: events}
}

// windowVars adds to vars Grafana's range variables for the scenario's
// whole span.
func windowVars(truth scenario.Truth, vars map[string]string) map[string]string {
	span := int(truth.End.Sub(truth.Start).Seconds())
	vars["__range"] = fmt.Sprintf("%ds", span)
	vars["__range_s"] = strconv.Itoa(span)
	return vars
}

// queryPanels runs the Prometheus queries (of panels and annotations) that
// keep selects through Prometheus's query API over the scenario's span,
// with the template variables vars, and returns what each panel got and
// the panels in order.
func queryPanels(ctx context.Context, t *testing.T, bt backtested, keep func(Query) bool, vars map[string]string) (map[string]*panelResult, []string) {
	t.Helper()
	start, end, step := bt.truth.Start, bt.truth.End, 30*time.Second
	results := map[string]*panelResult{} // "uid/title"
	var order []string
	for _, q := range allQueries(t) {
		if !keep(q) || q.Datasource != "prometheus" || q.PanelType == "variable" {
			continue
		}
		expr, err := Expand(q.Expr, vars)
		require.NoError(t, err)
		got, err := bt.prom.QueryRange(ctx, expr, start, end, step)
		require.NoError(t, err, "%s / %s: %s", q.Dashboard, q.Panel, expr)
		key := q.Dashboard + "/" + q.Panel
		r := results[key]
		if r == nil {
			r = &panelResult{}
			results[key] = r
			order = append(order, key)
		}
		r.queries = append(r.queries, q)
		r.series = append(r.series, got)
	}
	require.NotEmpty(t, results)
	return results, order
}

// queryDashboards runs every Prometheus query of the dashboards chosen by
// uid over the scenario (queryPanels); each panel must return data, except
// those of liveOnly.
func queryDashboards(ctx context.Context, t *testing.T, bt backtested, dashboards func(uid string) bool, vars map[string]string) map[string]*panelResult {
	t.Helper()
	results, order := queryPanels(ctx, t, bt, func(q Query) bool { return dashboards(q.Dashboard) }, vars)
	for _, key := range order {
		r := results[key]
		n := 0
		for _, s := range r.series {
			n += len(s)
		}
		if liveOnly[key] {
			require.Zero(t, n, "%s has data in the scenario now: take it off liveOnly", key)
			continue
		}
		if n == 0 {
			t.Errorf("%s returned no data over the %s scenario; queries: %v", key, bt.truth.Scenario, exprs(r.queries))
		}
	}
	return results
}

// pictureSeries turns the series query qi of a panel got into series of
// the picture, named by the query's legend and styled by style.
func pictureSeries(r *panelResult, qi int, style func(name string) picture.Series) []picture.Series {
	var out []picture.Series
	for _, rs := range r.series[qi] {
		s := style(legend(r.queries[qi].Legend, rs.Metric))
		for _, v := range rs.Values {
			s.Points = append(s.Points, picture.Point{T: sampleTime(v), V: sampleValue(v)})
		}
		out = append(out, s)
	}
	return out
}

func plainSeries(name string) picture.Series { return picture.Series{Name: name} }

// statesPanel draws a state timeline panel: one row per series.
func statesPanel(title string, r *panelResult) picture.Panel {
	p := picture.Panel{Title: title, Kind: picture.States}
	for qi := range r.queries {
		got := pictureSeries(r, qi, plainSeries)
		// A row that never held is drawn empty, if it has a fixed name.
		if len(got) == 0 && !legendRE.MatchString(r.queries[qi].Legend) {
			got = []picture.Series{{Name: r.queries[qi].Legend}}
		}
		p.Series = append(p.Series, got...)
	}
	return p
}

// oneLegend styles repeats of a series (one per replica or client) with one
// legend entry, name.
func oneLegend(name string, style picture.Series) func(string) picture.Series {
	seen := false
	return func(string) picture.Series {
		s := style
		s.Name, s.NoLegend = name, seen
		seen = true
		return s
	}
}

// writePicture draws pic into path, or a temporary file when path is
// empty; no panel of it may be empty.
func writePicture(t *testing.T, pic picture.Picture, path string, width, height vg.Length) {
	t.Helper()
	for _, p := range pic.Panels {
		points := 0
		for _, s := range p.Series {
			points += len(s.Points)
		}
		require.NotZero(t, points, "the picture's panel %q would be empty", p.Title)
	}
	out := filepath.Join(t.TempDir(), "picture.png")
	if path != "" {
		out = path
		require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
	}
	require.NoError(t, atomicfile.Write(out, 0o644, func(w io.Writer) error { return picture.WritePNG(w, pic, width, height) }))
	t.Logf("picture: %s", out)
}

func allZero(s picture.Series) bool {
	for _, p := range s.Points {
		if p.V != 0 {
			return false
		}
	}
	return true
}

func exprs(qs []Query) []string {
	var out []string
	for _, q := range qs {
		out = append(out, q.Expr)
	}
	return out
}

func sampleTime(v [2]any) time.Time {
	f, _ := v[0].(float64)
	return time.UnixMilli(int64(f * 1000))
}

func sampleValue(v [2]any) float64 {
	s, _ := v[1].(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func anyValue(ss []testenv.RangeSeries, want string) bool {
	for _, s := range ss {
		for _, v := range s.Values {
			if v[1] == want {
				return true
			}
		}
	}
	return false
}

var legendRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// legend renders a Grafana legend format for a series.
func legend(format string, metric map[string]string) string {
	return legendRE.ReplaceAllStringFunc(format, func(m string) string {
		return metric[legendRE.FindStringSubmatch(m)[1]]
	})
}

// overviewPicture turns the overview's query results into the stacked
// panels of the picture, as the dashboard draws them.
func overviewPicture(results map[string]*panelResult, truth scenario.Truth, start, end time.Time) picture.Picture {
	get := func(title string) *panelResult { return results[OverviewUID+"/"+title] }
	toSeries, plain, once := pictureSeries, plainSeries, oneLegend
	states := func(title string) picture.Panel { return statesPanel(title, get(title)) }

	mem := get(MemoryPanel)
	memory := picture.Panel{Title: MemoryPanel, YLabel: "GiB", Scale: 1 << 30, Height: 1.3}
	memory.Series = append(memory.Series, toSeries(mem, 0, plain)...)
	memory.Series = append(memory.Series, toSeries(mem, 1, once("limit", picture.Series{Dashed: true, Color: picture.Grey}))...)
	// OOM kills sit on the limit line, as red points.
	limitAt := map[int64]float64{}
	for _, s := range mem.series[1] {
		for _, v := range s.Values {
			limitAt[sampleTime(v).Unix()] = max(limitAt[sampleTime(v).Unix()], sampleValue(v))
		}
	}
	for _, s := range toSeries(mem, 2, once("OOM kill", picture.Series{Dots: true, Color: picture.Red})) {
		for i := range s.Points {
			s.Points[i].V = limitAt[s.Points[i].T.Unix()]
		}
		memory.Series = append(memory.Series, s)
	}

	colours := map[string]picture.Series{
		"fresh": {Name: "fresh", Color: picture.Green}, "late": {Name: "late", Color: picture.Orange}, "expired": {Name: "expired", Color: picture.Red},
	}
	leases := picture.Panel{Title: LeasesPanel, YLabel: "leases", Kind: picture.Stacked}
	byState := map[string]picture.Series{}
	for _, s := range toSeries(get(LeasesPanel), 0, func(n string) picture.Series { return colours[n] }) {
		byState[s.Name] = s
	}
	for _, st := range []string{"fresh", "late", "expired"} {
		if s, ok := byState[st]; ok {
			leases.Series = append(leases.Series, s)
		}
	}

	gw := get(GatewayPanel)
	gateway := picture.Panel{Title: GatewayPanel, YLabel: "requests/s", Height: 1.3}
	gateway.Series = append(gateway.Series, toSeries(gw, 0, plain)...)
	for _, s := range toSeries(gw, 1, func(n string) picture.Series {
		return picture.Series{Name: n, Dashed: true, Color: picture.Red}
	}) {
		if !allZero(s) {
			gateway.Series = append(gateway.Series, s)
		}
	}
	gateway.Series = append(gateway.Series, toSeries(gw, 3, func(n string) picture.Series {
		return picture.Series{Name: n, Color: picture.Black}
	})...)
	gateway.Series = append(gateway.Series, toSeries(gw, 2, func(n string) picture.Series {
		return picture.Series{Name: n + " (median of the last hour)", Dashed: true, Color: picture.Grey}
	})...)

	incident, signals := states(IncidentPanel), states(SignalsPanel)
	incident.Height, signals.Height = 0.45, 0.9
	return picture.Picture{
		Title: fmt.Sprintf("Cascade overview, incident scenario (%d nodes, cluster %s): API server OOM, leases expire, gateway floods",
			truth.Nodes, truth.Cluster),
		Start:    start,
		End:      end,
		Location: time.FixedZone("CET", 3600),
		Panels:   []picture.Panel{incident, signals, memory, leases, gateway},
	}
}
