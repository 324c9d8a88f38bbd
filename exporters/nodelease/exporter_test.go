package nodelease

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/internal/kube"
	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestExporterAgainstRealAPIServer creates, renews, expires and deletes real
// Lease objects, kills the API server under the running exporter and brings
// it back.
func TestExporterAgainstRealAPIServer(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	client, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	ensureNamespace(t, client, "kube-node-lease")

	now := time.Now()
	createLease(t, client, "node-fresh", now, 40)
	createLease(t, client, "node-late", now.Add(-15*time.Second), 40)
	createLease(t, client, "node-expired", now.Add(-60*time.Second), 40)
	createNode(t, client, "node-fresh", corev1.ConditionTrue)
	createNode(t, client, "node-late", corev1.ConditionFalse)
	createNode(t, client, "node-expired", corev1.ConditionUnknown)
	createNode(t, client, "node-new", "")

	cfg := DefaultConfig()
	cfg.ProbeInterval = 300 * time.Millisecond
	cfg.ProbeTimeout = 250 * time.Millisecond
	logger, logs := logtest.New()
	exp, err := New(cfg, exporterClient(t, cp.RESTConfig()), logger)
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- exp.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})

	waitMetric(t, exp, `cascade_node_lease_watch_up`, 1)
	// The node watch syncs on its own, possibly after the lease watch.
	waitMetric(t, exp, `cascade_nodes{condition="unknown"}`, 2)
	m := scrape(t, exp)
	require.Equal(t, 1.0, m[`cascade_node_leases{state="fresh"}`])
	require.Equal(t, 1.0, m[`cascade_node_leases{state="late"}`])
	require.Equal(t, 1.0, m[`cascade_node_leases{state="expired"}`])
	require.Equal(t, 1.0, m[`cascade_nodes{condition="ready"}`])
	require.Equal(t, 1.0, m[`cascade_nodes{condition="not_ready"}`])
	require.Equal(t, 2.0, m[`cascade_nodes{condition="unknown"}`])
	require.InDelta(t, float64(now.UnixMicro())/1e6, m[`cascade_node_lease_renew_timestamp_seconds{node="node-fresh"}`], 1e-6,
		"renew time is exported with sub-second precision")
	require.Equal(t, 40.0, m[`cascade_node_lease_duration_seconds{node="node-late"}`])
	require.InDelta(t, float64(time.Now().Unix()), m[`cascade_node_lease_watch_last_event_timestamp_seconds`], 10)
	lintClean(t, exp)

	// Renewal moves an expired lease back to fresh.
	renewLease(t, client, "node-expired", time.Now())
	waitMetric(t, exp, `cascade_node_leases{state="fresh"}`, 2)

	// A lease left alone expires with no event at all.
	createLease(t, client, "node-short", time.Now(), 2)
	waitMetric(t, exp, `cascade_node_leases{state="fresh"}`, 3)
	waitMetric(t, exp, `cascade_node_lease_duration_seconds{node="node-short"}`, 2)
	waitMetric(t, exp, `cascade_node_leases{state="expired"}`, 1) // node-short, by time alone

	// A node turning Ready moves between the counts.
	setNodeReady(t, client, "node-late", corev1.ConditionTrue)
	waitMetric(t, exp, `cascade_nodes{condition="ready"}`, 2)

	// The API server dies: the watch is reported down at once and lease
	// counts disappear instead of turning "expired" or staying "fresh".
	cp.KillAPIServer()
	waitMetric(t, exp, `cascade_node_lease_watch_up`, 0)
	m = scrape(t, exp)
	for _, s := range []string{"fresh", "late", "expired"} {
		require.NotContains(t, m, `cascade_node_leases{state="`+s+`"}`)
	}
	require.NotContains(t, m, `cascade_nodes{condition="ready"}`)
	require.Contains(t, m, `cascade_node_lease_renew_timestamp_seconds{node="node-fresh"}`,
		"the last known renew times are still served")
	lastEventBefore := m[`cascade_node_lease_watch_last_event_timestamp_seconds`]
	// The watch or the probe may be the first to see it; the probe fails too.
	waitFor(t, func() bool { return scrape(t, exp)[`cascade_node_lease_watch_errors_total{resource="probe"}`] > 0 }, logs)

	// It comes back by itself and sees what changed while it was away.
	require.NoError(t, cp.StartAPIServer())
	renewLease(t, client, "node-late", time.Now())
	require.NoError(t, client.CoordinationV1().Leases("kube-node-lease").Delete(ctx, "node-short", metav1.DeleteOptions{}))
	waitMetric(t, exp, `cascade_node_lease_watch_up`, 1)
	waitMetric(t, exp, `cascade_node_leases{state="expired"}`, 0)
	m = scrape(t, exp)
	require.NotContains(t, m, `cascade_node_lease_renew_timestamp_seconds{node="node-short"}`)
	require.NotContains(t, m, `cascade_node_lease_duration_seconds{node="node-short"}`)
	require.Greater(t, m[`cascade_node_lease_watch_last_event_timestamp_seconds`], lastEventBefore)

	// The outage is in the log once when the probe failed and once when it
	// recovered, whatever the number of retries. The watches may not have
	// retried while the API server was away; if they did, the same holds.
	waitFor(t, func() bool { return logs.Count("API server probe recovered") == 1 }, logs)
	require.Greater(t, m[`cascade_node_lease_watch_errors_total{resource="probe"}`], 1.0)
	require.Equal(t, 1, logs.Count("API server probe failing"), "in:\n%s", logs)
	for _, w := range []string{"lease watch", "node watch"} {
		waitFor(t, func() bool { return logs.Count(w+" recovered") == logs.Count(w+" failing") }, logs)
		require.LessOrEqual(t, logs.Count(w+" failing"), 1, "in:\n%s", logs)
	}
}

// TestListsInPages: the initial lists ask for small pages of the newest
// state instead of resourceVersion 0, which the API server would answer
// from its watch cache in one response (at 5,000 nodes a 300 MB start-up
// peak), every object of every page is counted, and each page's garbage is
// collected early.
func TestListsInPages(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	admin, err := cp.Clientset()
	require.NoError(t, err)
	ensureNamespace(t, admin, "kube-node-lease")
	const n = 7
	for i := range n {
		name := fmt.Sprintf("node-%d", i)
		createLease(t, admin, name, time.Now(), 40)
		ready := corev1.ConditionTrue
		if i%3 == 0 {
			ready = corev1.ConditionFalse
		}
		createNode(t, admin, name, ready)
	}

	var mu sync.Mutex
	var lists []url.Values
	var gcPercents []int64 // GOGC during each node list
	steadyGC := gcPercent()
	cfg := cp.RESTConfig()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			q := r.URL.Query()
			if r.Method == http.MethodGet && q.Get("watch") != "true" && strings.HasSuffix(r.URL.Path, "/nodes") {
				mu.Lock()
				lists = append(lists, q)
				gcPercents = append(gcPercents, gcPercent())
				mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	}
	client, err := kube.NewClientForConfig(cfg)
	require.NoError(t, err)

	exp, err := New(DefaultConfig(), client, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	exp.leasePageSize, exp.nodePageSize = 2, 2
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go func() { _ = exp.Run(ctx) }()

	waitMetric(t, exp, `cascade_node_leases{state="fresh"}`, n)
	waitMetric(t, exp, `cascade_nodes{condition="ready"}`, 4)
	m := scrape(t, exp)
	require.Equal(t, 3.0, m[`cascade_nodes{condition="not_ready"}`])
	renew := 0
	for k := range m {
		if strings.HasPrefix(k, "cascade_node_lease_renew_timestamp_seconds{") {
			renew++
		}
	}
	require.Equal(t, n, renew, "every lease of every page")

	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(lists), 4, "7 nodes in pages of 2: %v", lists)
	continued := 0
	for _, q := range lists {
		require.Equal(t, "2", q.Get("limit"), "every node list is a page: %v", q)
		require.Empty(t, q.Get("resourceVersion"), "pages come from the newest state, not the watch cache's resourceVersion 0: %v", q)
		if q.Get("continue") != "" {
			continued++
		}
	}
	require.GreaterOrEqual(t, continued, 3, "the list went on page after page: %v", lists)

	// The pages' garbage is collected as they come: a low GOGC until the
	// lists are in, the process's own after.
	for _, p := range gcPercents {
		require.Equal(t, int64(startupGCPercent), p, "GOGC while listing")
	}
	require.Eventually(t, func() bool { return gcPercent() == steadyGC }, 10*time.Second, 10*time.Millisecond,
		"GOGC back to %d after the lists", steadyGC)
}

// gcPercent reads GOGC without changing it.
func gcPercent() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// exporterClient is the exporter's own client of the API server at cfg.
func exporterClient(t *testing.T, cfg *rest.Config) *kube.Client {
	t.Helper()
	client, err := kube.NewClientForConfig(cfg)
	require.NoError(t, err)
	return client
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPerNodeSeriesOff keeps only the aggregate series.
func TestPerNodeSeriesOff(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	client, err := cp.Clientset()
	require.NoError(t, err)
	ensureNamespace(t, client, "kube-node-lease")
	createLease(t, client, "node-a", time.Now(), 40)

	cfg := DefaultConfig()
	cfg.PerNodeSeries = false
	exp, err := New(cfg, exporterClient(t, cp.RESTConfig()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go func() { _ = exp.Run(ctx) }()

	waitMetric(t, exp, `cascade_node_leases{state="fresh"}`, 1)
	for k := range scrape(t, exp) {
		require.NotContains(t, k, `node=`, "per-node series must be off")
	}
}

func TestConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		err    string
	}{
		"defaults":          {func(*Config) {}, ""},
		"empty namespace":   {func(c *Config) { c.Namespace = "" }, "namespace must not be empty"},
		"bad namespace":     {func(c *Config) { c.Namespace = "Kube_Node" }, `namespace "Kube_Node"`},
		"negative interval": {func(c *Config) { c.ProbeInterval = -time.Second }, "must not be negative"},
		"timeout too long":  {func(c *Config) { c.ProbeTimeout = time.Minute }, "probe timeout 1m0s"},
		"probe off":         {func(c *Config) { c.ProbeInterval = 0 }, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// scrape fetches the exporter's /metrics as Prometheus would, through the
// same handler the command serves, into "name{labels}" → value.
func scrape(t *testing.T, e *Exporter) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, mf := range parseExposition(t, fetch(t, e)) {
		for _, m := range mf.Metric {
			out[seriesKey(mf.GetName(), m)] = metricValue(m)
		}
	}
	return out
}

// handlers holds one handler per exporter, as the server does, so that
// what the handler keeps between scrapes (the steady families) is tested.
var handlers sync.Map

// fetch scrapes e, asking for gzip every other time: both bodies are made
// from what the handler keeps.
func fetch(t *testing.T, e *Exporter) []byte {
	t.Helper()
	h, ok := handlers.Load(e)
	if !ok {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(collectorFunc{e})
		h, _ = handlers.LoadOrStore(e, exporters.Handler(reg, []exporters.TextAppender{e}, exporters.HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler)))
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if fetches.Add(1)%2 == 0 {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	w := httptest.NewRecorder()
	h.(http.Handler).ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code)
	if w.Header().Get("Content-Encoding") != "gzip" {
		return w.Body.Bytes()
	}
	zr, err := gzip.NewReader(w.Body)
	require.NoError(t, err)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	return body
}

var fetches atomic.Uint64

func parseExposition(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	require.NoError(t, err, "the exposition must parse:\n%s", b)
	return mfs
}

// waitFor polls cond for up to a minute; on timeout it fails with the log.
func waitFor(t *testing.T, cond func() bool, logs *logtest.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met within a minute; the log:\n%s", logs)
		time.Sleep(50 * time.Millisecond)
	}
}

func waitMetric(t *testing.T, e *Exporter, key string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got map[string]float64
	for time.Now().Before(deadline) {
		got = scrape(t, e)
		if v, ok := got[key]; ok && v == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became %v; last scrape: %v", key, want, got)
}

// lintClean runs promlint over the whole exposition, per-node families
// included.
func lintClean(t *testing.T, e *Exporter) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(fetch(t, e))).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

type collectorFunc struct{ e *Exporter }

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { c.e.Describe(ch) }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) {
	if err := c.e.Update(ch); err != nil {
		panic(err)
	}
}

func seriesKey(name string, m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	if len(parts) == 0 {
		return name
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

func ensureNamespace(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	_, err := c.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
}

func createLease(t *testing.T, c kubernetes.Interface, name string, renew time.Time, seconds int32) {
	t.Helper()
	_, err := c.CoordinationV1().Leases("kube-node-lease").Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &name,
			LeaseDurationSeconds: &seconds,
			RenewTime:            &metav1.MicroTime{Time: renew},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

func renewLease(t *testing.T, c kubernetes.Interface, name string, renew time.Time) {
	t.Helper()
	api := c.CoordinationV1().Leases("kube-node-lease")
	l, err := api.Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	l.Spec.RenewTime = &metav1.MicroTime{Time: renew}
	_, err = api.Update(t.Context(), l, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func createNode(t *testing.T, c kubernetes.Interface, name string, ready corev1.ConditionStatus) {
	t.Helper()
	_, err := c.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	if ready != "" {
		setNodeReady(t, c, name, ready)
	}
}

func setNodeReady(t *testing.T, c kubernetes.Interface, name string, ready corev1.ConditionStatus) {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	n.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
		{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.Now()},
	}
	_, err = c.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
	require.NoError(t, err)
}
