package remotequery

import (
	"fmt"
	"maps"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// store is a query API under test, fed by the reference Prometheus's
// remote write.
type store struct {
	name string
	url  string
	// extraLabels are labels the store adds to every raw series it
	// answers, and the value they get.
	extraLabels map[string]string
	// extraLabelNames are what its label-names API adds to the series'
	// label names.
	extraLabelNames []string
	// flush, if set, makes what the store received visible to queries.
	flush func() error
}

// TestAgainstThanosAndVictoriaMetrics: Prometheus scrapes a target and
// remote-writes every sample (staleness markers included) to a Thanos
// Receive ring (read through Thanos Query) and to VictoriaMetrics. PromQL
// evaluated here over each store's query API gives what Prometheus gives on
// its own TSDB: the remote query path accepts each store's answers as they
// are. The differences kept: Thanos answers every raw series with the
// Receive tenant's external label, tenant_id, and lists the Receive replica
// label among label names (it deduplicates series, not names).
func TestAgainstThanosAndVictoriaMetrics(t *testing.T) {
	target := &demoTarget{}
	srv := httptest.NewServer(target)
	defer srv.Close()
	ring := testenv.ThanosReceiveForTest(t, 2, 2)
	thanos := testenv.ThanosQueryForTest(t, testenv.ThanosQueryOptions{Endpoints: ring.GRPCAddresses()})
	vm := testenv.VictoriaMetricsForTest(t)
	prom := testenv.PrometheusForTest(t, fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [%q], labels: {cluster: c1}}]
remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 100ms}
  - url: %s
    queue_config: {batch_send_deadline: 100ms}
`, srv.Listener.Addr().String(), ring.RemoteWriteURL(), vm.RemoteWriteURL()))
	papi := apiOf(t, prom.URL)
	stores := []store{
		// Thanos's label names are not deduplicated: the Receive
		// replica label is among them, never on a series.
		{name: "thanos", url: thanos.URL, extraLabels: map[string]string{"tenant_id": "default-tenant"}, extraLabelNames: []string{"tenant_id", testenv.ThanosReceiveReplicaLabel}},
		{name: "victoriametrics", url: vm.URL, flush: func() error { return vm.Flush(t.Context()) }},
	}

	require.Eventually(t, func() bool { return target.scrapes.Load() >= 8 }, 30*time.Second, 100*time.Millisecond)
	ts := betweenScrapes(t, papi)
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			awaitDelivery(t, s, papi, ts)
			client := newClient(t, s.url, 10*time.Second)
			for _, expr := range comparedExprs(ts) {
				requireSame(t, evalInPrometheus(t, papi, expr, ts), withoutLabels(evalWith(t, client, expr, ts), s.extraLabels), expr)
			}

			q, err := client.Querier(ts.Add(-time.Minute).UnixMilli(), ts.UnixMilli())
			require.NoError(t, err)
			names, _, err := q.LabelValues(t.Context(), "__name__", nil)
			require.NoError(t, err)
			require.Subset(t, names, []string{"demo_requests_total", "demo_temperature", "demo_vanishing", "up"})
			lnames, _, err := q.LabelNames(t.Context(), nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "demo_temperature"))
			require.NoError(t, err)
			want := append([]string{"__name__", "cluster", "instance", "job", "room"}, s.extraLabelNames...)
			slices.Sort(want)
			require.Equal(t, want, lnames)
		})
	}

	// A series that vanished is gone at once in every store, as in
	// Prometheus: its staleness marker was remote-written too.
	target.vanish.Store(true)
	n := target.scrapes.Load()
	require.Eventually(t, func() bool { return target.scrapes.Load() >= n+2 }, 10*time.Second, 50*time.Millisecond)
	now := betweenScrapes(t, papi)
	for _, s := range stores {
		t.Run(s.name+"/staleness", func(t *testing.T) {
			awaitDelivery(t, s, papi, now)
			client := newClient(t, s.url, 10*time.Second)
			require.Empty(t, evalWith(t, client, `demo_vanishing`, now))
			expr := `max_over_time(demo_vanishing[1m])`
			requireSame(t, evalInPrometheus(t, papi, expr, now), withoutLabels(evalWith(t, client, expr, now), s.extraLabels), expr)
		})
	}
}

func apiOf(t *testing.T, url string) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	require.NoError(t, err)
	return v1.NewAPI(c)
}

// awaitDelivery waits until the store holds the newest sample Prometheus
// has at ts, asking it for raw samples (which every store answers as
// stored, whatever its own notion of "now").
func awaitDelivery(t *testing.T, s store, papi v1.API, ts time.Time) {
	t.Helper()
	newest := func(a v1.API) model.Time {
		v, _, err := a.Query(t.Context(), `demo_temperature[10s]`, ts)
		if err != nil {
			return 0
		}
		var max model.Time
		m, _ := v.(model.Matrix)
		for _, series := range m {
			if n := len(series.Values); n > 0 && series.Values[n-1].Timestamp > max {
				max = series.Values[n-1].Timestamp
			}
		}
		return max
	}
	want := newest(papi)
	require.NotZero(t, want)
	sapi := apiOf(t, s.url)
	require.Eventually(t, func() bool {
		if s.flush != nil {
			_ = s.flush()
		}
		return newest(sapi) >= want
	}, 30*time.Second, 100*time.Millisecond, "%s never received the sample of %s", s.name, want.Time())
}

// withoutLabels drops the store's own labels from the series of a result,
// where they carry the value the store gives them.
func withoutLabels(res map[string]float64, drop map[string]string) map[string]float64 {
	if len(drop) == 0 {
		return res
	}
	out := map[string]float64{}
	for k, v := range res {
		for name, value := range maps.All(drop) {
			pair := fmt.Sprintf("%s=%q", name, value)
			k = strings.Replace(strings.Replace(k, ", "+pair, "", 1), pair+", ", "", 1)
			k = strings.Replace(k, "{"+pair+"}", "{}", 1)
		}
		if old, ok := out[k]; ok && !math.IsNaN(old) {
			panic("two series differ only by " + fmt.Sprint(drop))
		}
		out[k] = v
	}
	return out
}
