package remotequery

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// demoTarget serves a counter growing by 10 a scrape, a gauge, and a series
// that vanishes when told to (Prometheus then marks it stale).
type demoTarget struct {
	scrapes atomic.Int64
	vanish  atomic.Bool
}

func (d *demoTarget) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := d.scrapes.Add(1)
	fmt.Fprintf(w, "# TYPE demo_requests_total counter\n")
	fmt.Fprintf(w, "demo_requests_total{code=\"200\"} %d\n", 10*n)
	fmt.Fprintf(w, "demo_requests_total{code=\"504\"} %d\n", n/3)
	fmt.Fprintf(w, "demo_temperature{room=\"a\"} 21.5\ndemo_temperature{room=\"b\"} %d\n", 18+n%4)
	if !d.vanish.Load() {
		fmt.Fprintf(w, "demo_vanishing 1\n")
	}
}

func newEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger: promslog.NewNopLogger(), MaxSamples: 1e6, Timeout: time.Minute,
		LookbackDelta: lookback, EnableAtModifier: true,
	})
}

// evalWith evaluates expr at ts over q, as the rule engine does.
func evalWith(t *testing.T, q storage.Queryable, expr string, ts time.Time) map[string]float64 {
	t.Helper()
	qry, err := newEngine().NewInstantQuery(t.Context(), q, nil, expr, ts)
	require.NoError(t, err)
	defer qry.Close()
	res := qry.Exec(t.Context())
	require.NoError(t, res.Err, expr)
	out := map[string]float64{}
	switch v := res.Value.(type) {
	case promql.Vector:
		for _, s := range v {
			out[s.Metric.String()] = s.F
		}
	case promql.Scalar:
		out["scalar"] = v.V
	default:
		t.Fatalf("%s: unexpected %T", expr, res.Value)
	}
	return out
}

// evalInPrometheus evaluates expr at ts in Prometheus itself.
func evalInPrometheus(t *testing.T, papi v1.API, expr string, ts time.Time) map[string]float64 {
	t.Helper()
	v, _, err := papi.Query(t.Context(), expr, ts)
	require.NoError(t, err, expr)
	out := map[string]float64{}
	switch v := v.(type) {
	case model.Vector:
		for _, s := range v {
			lb := labels.NewBuilder(labels.EmptyLabels())
			for k, val := range s.Metric {
				lb.Set(string(k), string(val))
			}
			out[lb.Labels().String()] = float64(s.Value)
		}
	case *model.Scalar:
		out["scalar"] = float64(v.Value)
	default:
		t.Fatalf("%s: unexpected %T", expr, v)
	}
	return out
}

// betweenScrapes returns a time 250 ms after the last scrape, off whole
// seconds: no range boundary falls on a sample or a subquery step there, so
// Prometheus 2 (ranges closed at the start) and 3 (open) select the same.
func betweenScrapes(t *testing.T, papi v1.API) time.Time {
	t.Helper()
	v, _, err := papi.Query(t.Context(), `max(timestamp(demo_temperature))`, time.Now())
	require.NoError(t, err)
	vec, ok := v.(model.Vector)
	require.True(t, ok && len(vec) == 1, "no scrape yet: %v", v)
	ts := time.UnixMilli(int64(math.Round(float64(vec[0].Value)*1000)) + 250)
	if ts.UnixMilli()%1000 == 0 {
		ts = ts.Add(100 * time.Millisecond)
	}
	return ts
}

func requireSame(t *testing.T, want, got map[string]float64, expr string) {
	t.Helper()
	keys := func(m map[string]float64) []string {
		var k []string
		for s := range m {
			k = append(k, s)
		}
		sort.Strings(k)
		return k
	}
	require.Equal(t, keys(want), keys(got), expr)
	for k, w := range want {
		require.InDelta(t, w, got[k], 1e-9*math.Max(1, math.Abs(w)), "%s: %s", expr, k)
	}
}

// comparedExprs are what the remote query path must evaluate as
// Prometheus does at ts: instant selectors, ranges, subqueries, offsets,
// @, timestamps, aggregations.
func comparedExprs(ts time.Time) []string {
	return []string{
		`demo_temperature`,
		`demo_requests_total{code="200"}`,
		`{__name__=~"demo_.*", room!="b"}`,
		`rate(demo_requests_total[5s])`,
		`increase(demo_requests_total[3s])`,
		`max_over_time(demo_temperature[6s:1s])`,
		`demo_requests_total offset 2s`,
		`demo_temperature @ ` + fmt.Sprint(ts.Add(-3*time.Second).Unix()),
		`timestamp(demo_temperature)`,
		`sum by (cluster) (demo_temperature)`,
		`count(up)`,
		`demo_vanishing`,
	}
}

// TestAgainstPrometheus: PromQL evaluated here over a real Prometheus's
// query API gives what that Prometheus gives itself: instant selectors
// (staleness included), ranges, subqueries, offsets, timestamps; and Split
// reads the rules' own series locally, the rest remotely, never twice.
func TestAgainstPrometheus(t *testing.T) {
	target := &demoTarget{}
	srv := httptest.NewServer(target)
	defer srv.Close()
	prom := testenv.PrometheusForTest(t, fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [%q], labels: {cluster: c1}}]
`, srv.Listener.Addr().String()))
	ac, err := api.NewClient(api.Config{Address: prom.URL})
	require.NoError(t, err)
	papi := v1.NewAPI(ac)
	client := newClient(t, prom.URL, 10*time.Second)

	require.Eventually(t, func() bool { return target.scrapes.Load() >= 8 }, 30*time.Second, 100*time.Millisecond)
	ts := betweenScrapes(t, papi)

	for _, expr := range comparedExprs(ts) {
		requireSame(t, evalInPrometheus(t, papi, expr, ts), evalWith(t, client, expr, ts), expr)
	}
	require.NotEmpty(t, evalWith(t, client, `demo_vanishing`, ts))

	// A series that vanished is gone at once, as in Prometheus: not
	// carried on for the 5-minute lookback.
	target.vanish.Store(true)
	n := target.scrapes.Load()
	require.Eventually(t, func() bool { return target.scrapes.Load() >= n+2 }, 10*time.Second, 50*time.Millisecond)
	now := betweenScrapes(t, papi)
	require.Empty(t, evalInPrometheus(t, papi, `demo_vanishing`, now))
	require.Empty(t, evalWith(t, client, `demo_vanishing`, now))
	requireSame(t, evalInPrometheus(t, papi, `max_over_time(demo_vanishing[1m])`, now), evalWith(t, client, `max_over_time(demo_vanishing[1m])`, now), "range over a vanished series")

	t.Run("split", func(t *testing.T) {
		db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
		require.NoError(t, err)
		defer db.Close()
		app := db.Appender(t.Context())
		at := now.UnixMilli()
		for _, s := range []struct {
			lset labels.Labels
			v    float64
		}{
			{labels.FromStrings("__name__", "demo:temperature:max", "cluster", "c1"), 99},
			{labels.FromStrings("__name__", "ALERTS", "alertname", "Hot", "alertstate", "firing"), 1},
			// A raw series the collector also keeps locally: read remotely only.
			{labels.FromStrings("__name__", "demo_temperature", "cluster", "c1", "instance", srv.Listener.Addr().String(), "job", "demo", "room", "a"), -1},
		} {
			_, err := app.Append(0, s.lset, at, s.v)
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())

		split := Split(db, client)
		remoteCalls := func() float64 { return testutil.ToFloat64(client.requests.WithLabelValues("success")) }

		before := remoteCalls()
		requireSame(t, map[string]float64{`{__name__="demo:temperature:max", cluster="c1"}`: 99}, evalWith(t, split, `demo:temperature:max`, now), "recording rule")
		requireSame(t, map[string]float64{`{__name__="ALERTS", alertname="Hot", alertstate="firing"}`: 1}, evalWith(t, split, `ALERTS`, now), "ALERTS")
		require.Equal(t, before, remoteCalls(), "the rules' own series are never asked of the store")

		requireSame(t, evalInPrometheus(t, papi, `demo_temperature`, now), evalWith(t, split, `demo_temperature`, now), "raw series from the store only")
		require.Greater(t, remoteCalls(), before)

		got := evalWith(t, split, `{__name__=~"demo.*temperature.*", room!="b"}`, now)
		want := evalInPrometheus(t, papi, `{__name__=~"demo.*temperature.*", room!="b"}`, now)
		want[`{__name__="demo:temperature:max", cluster="c1"}`] = 99
		requireSame(t, want, got, "a regular expression reads both sides, each once")

		q, err := split.Querier(now.Add(-time.Minute).UnixMilli(), now.UnixMilli())
		require.NoError(t, err)
		names, _, err := q.LabelValues(t.Context(), "__name__", nil)
		require.NoError(t, err)
		require.Contains(t, names, "demo:temperature:max")
		require.Contains(t, names, "demo_requests_total")
		require.Contains(t, names, "ALERTS")
		lnames, _, err := q.LabelNames(t.Context(), nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "demo_temperature"))
		require.NoError(t, err)
		require.Equal(t, []string{"__name__", "cluster", "instance", "job", "room"}, lnames)
		require.NoError(t, q.Close())

		// The store goes away: reading raw series fails, loudly.
		prom.Stop()
		qry, err := newEngine().NewInstantQuery(t.Context(), split, nil, `sum(demo_temperature) or vector(0)`, now)
		require.NoError(t, err)
		res := qry.Exec(t.Context())
		require.Error(t, res.Err, "a dead store is an error, not an empty answer")
		require.True(t, strings.Contains(res.Err.Error(), "connection refused"), res.Err.Error())
	})
}
