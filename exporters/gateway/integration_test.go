package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

const (
	uaKubelet    = "kubelet/v1.37.2 (linux/amd64) kubernetes/abc123"
	uaKubectl    = "kubectl/v1.37.2 (linux/amd64) kubernetes/abc123"
	uaController = "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc123/leader-election"
	uaOther      = "curl/8.5.0"

	leases     = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
	quietWatch = "/api/v1/watch/namespaces/{namespace}/configmaps"
)

// gatewayClient sends requests through nginx and tallies what the exporter
// must count, by route template as written here by hand.
type gatewayClient struct {
	t      *testing.T
	url    string
	token  string
	mu     sync.Mutex
	want   map[string]float64 // requests_total keys
	wantTO map[string]float64 // timeouts_total keys
	n      int
}

func (c *gatewayClient) do(method, path, ua, route, client string, body string, token string) int {
	status, _ := c.request(method, path, ua, route, client, body, token)
	return status
}

func (c *gatewayClient) get(path, ua, route, client string) (int, []byte) {
	return c.request("GET", path, ua, route, client, "", c.token)
}

// request sends one request and returns its status and body. It is called
// from several goroutines, so it reports errors without stopping the test.
func (c *gatewayClient) request(method, path, ua, route, client string, body string, token string) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.url+path, r)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", ua)
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	// A stream nginx cut ends with a truncated body; its status stands.
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want[req4(route, method, resp.StatusCode, client)]++
	if resp.StatusCode == http.StatusGatewayTimeout {
		c.wantTO[timeouts(route, client)]++
	}
	c.n++
	return resp.StatusCode, respBody
}

func req4(route, method string, code int, client string) string {
	return req(route, method, fmt.Sprint(code), client)
}

// TestRealGateway drives real requests through nginx in front of a real
// kube-apiserver, as kubelets, kubectl, a controller and others, including
// requests nginx cuts with 504, and checks the exporter counted exactly
// those, series by series. Every line also reaches a real Loki-protocol
// store (VictoriaLogs) unchanged.
func TestRealGateway(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	ng := testenv.NginxForTest(t, cp.URL, testenv.NginxOptions{ProxyReadTimeout: time.Second})
	vl := testenv.VictoriaLogsForTest(t)

	cfg := DefaultConfig()
	cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: ng.AccessLog}}
	cfg.PositionsFile = filepath.Join(t.TempDir(), "positions.json")
	cfg.PollInterval = 50 * time.Millisecond
	cfg.FromBeginning = true
	cfg.Cluster, cfg.Gateway = "lab", "nginx-0"
	cfg.Loki.URL = vl.LokiPushURL()
	cfg.Loki.BatchWait = 200 * time.Millisecond
	e, err := New(cfg, testLogger(t))
	require.NoError(t, err)
	stop := runExporter(t, e)

	c := &gatewayClient{t: t, url: ng.URL, token: cp.Token, want: map[string]float64{}, wantTO: map[string]float64{}}
	var wg sync.WaitGroup
	// Requests nginx cuts after its 1 s read timeout, in the background:
	// watches that get no event (the API server sends no header before the
	// first one) and a LIST waiting for a resourceVersion far ahead.
	for range 2 {
		wg.Go(func() {
			require.Equal(t, 504, c.do("GET", "/api/v1/namespaces/quiet/configmaps?watch=true", uaKubelet, quietWatch, "kubelet", "", cp.Token))
		})
	}
	wg.Go(func() {
		require.Equal(t, 504, c.do("GET", "/api/v1/pods?resourceVersion=999999999&resourceVersionMatch=NotOlderThan&limit=1",
			uaController, "/api/v1/pods", "controller", "", cp.Token))
	})
	// A watch from a future resourceVersion gets its headers at once and is
	// cut after 1 s: status 200, not a timeout for a watch.
	wg.Go(func() {
		require.Equal(t, 200, c.do("GET", "/api/v1/watch/namespaces/team-x/configmaps?resourceVersion=999999999",
			uaKubectl, "/api/v1/watch/namespaces/{namespace}/configmaps", "kubectl", "", cp.Token))
	})

	// Kubelets create and renew their leases, and fail to patch a node
	// that does not exist.
	for i := range 5 {
		body := fmt.Sprintf(`{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node-%d"},"spec":{"holderIdentity":"node-%d","leaseDurationSeconds":40}}`, i, i)
		require.Equal(t, 201, c.do("POST", leases, uaKubelet, leases, "kubelet", body, cp.Token))
	}
	for range 3 {
		for i := range 5 {
			// As the kubelet renews: read the lease, update the whole object.
			path := fmt.Sprintf("%s/node-%d?timeout=10s", leases, i)
			status, got := c.get(path, uaKubelet, leaseRoute, "kubelet")
			require.Equal(t, 200, status)
			var lease map[string]any
			require.NoError(t, json.Unmarshal(got, &lease))
			lease["spec"].(map[string]any)["renewTime"] = time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
			body, err := json.Marshal(lease)
			require.NoError(t, err)
			require.Equal(t, 200, c.do("PUT", path, uaKubelet, leaseRoute, "kubelet", string(body), cp.Token))
		}
	}
	for i := range 5 {
		require.Equal(t, 200, c.do("GET", fmt.Sprintf("%s/node-%d?timeout=10s", leases, i), uaKubelet, leaseRoute, "kubelet", "", cp.Token))
	}
	require.Equal(t, 404, c.do("GET", leases+"/node-missing", uaKubelet, leaseRoute, "kubelet", "", cp.Token))
	for range 3 {
		require.Equal(t, 404, c.do("PATCH", "/api/v1/nodes/node-1/status", uaKubelet, nodeStatus, "kubelet", `{"status":{}}`, cp.Token))
	}
	for range 2 {
		require.Equal(t, 401, c.do("GET", leases+"/node-1", uaKubelet, leaseRoute, "kubelet", "", "wrong-token"))
	}
	// kubectl, a controller and others.
	require.Equal(t, 201, c.do("POST", "/api/v1/namespaces", uaKubectl, "/api/v1/namespaces", "kubectl",
		`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}}`, cp.Token))
	for range 2 {
		require.Equal(t, 200, c.do("GET", "/api/v1/namespaces", uaKubectl, "/api/v1/namespaces", "kubectl", "", cp.Token))
	}
	require.Equal(t, 200, c.do("GET", "/api/v1/namespaces/team-a/configmaps?limit=500", uaKubectl,
		"/api/v1/namespaces/{namespace}/configmaps", "kubectl", "", cp.Token))
	require.Equal(t, 200, c.do("GET", "/api/v1/namespaces/kube-system/pods", uaKubectl,
		"/api/v1/namespaces/kube-system/pods", "kubectl", "", cp.Token))
	require.Equal(t, 200, c.do("GET", "/apis/apps/v1/deployments?limit=500", uaController, "/apis/apps/v1/deployments", "controller", "", cp.Token))
	require.Equal(t, 404, c.do("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
		uaController, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}", "controller", "", cp.Token))
	require.Equal(t, 200, c.do("GET", "/healthz", uaOther, "/healthz", "other", "", cp.Token))
	require.Equal(t, 200, c.do("GET", "/version", uaOther, "/version", "other", "", cp.Token))
	require.Equal(t, 404, c.do("GET", "/apis/example.com/v1/namespaces/team-a/widgets/w1", uaOther,
		"/apis/{group}/v1/namespaces/{namespace}/{resource}/{name}", "other", "", cp.Token))
	require.Equal(t, 404, c.do("GET", "/not-kubernetes", uaOther, RouteOther, "other", "", cp.Token))
	wg.Wait()

	waitLines(t, e, float64(c.n), 0)
	m := scrape(t, exporterCollector{e})
	for k, v := range c.want {
		require.Equal(t, v, m[k], "%s", k)
	}
	require.Equal(t, float64(c.n), sumMetric(m, "cascade_gateway_requests_total"), "no series beyond those sent")
	for k, v := range c.wantTO {
		require.Equal(t, v, m[k], "%s", k)
	}
	require.Equal(t, 3.0, sumMetric(m, "cascade_gateway_timeouts_total"))
	require.Equal(t, float64(c.n), sumMetric(m, "cascade_gateway_request_duration_seconds_count"))
	require.Equal(t, 2.0, m[durationCount(quietWatch, "kubelet")])
	require.InDelta(t, 2.0, m[durationSum(quietWatch, "kubelet")], 0.2, "two watches cut after 1 s")
	lintClean(t, e)

	// Every line nginx wrote reached the store, unchanged, under bounded
	// stream labels.
	stop()
	logged := testdataLinesOf(t, ng.AccessLog)
	require.Len(t, logged, c.n)
	var res []map[string]string
	waitFor(t, 30*time.Second, "every line in the store", func() bool {
		var err error
		res, err = vl.Query(t.Context(), `{cluster="lab",gateway="nginx-0"}`)
		require.NoError(t, err)
		return len(res) >= len(logged)
	})
	var stored []string
	for _, r := range res {
		stored = append(stored, r["_msg"])
		requireBoundedRoute(t, r["route"])
		require.Contains(t, []string{"2xx", "4xx", "5xx"}, r["code_class"])
	}
	sort.Strings(stored)
	sort.Strings(logged)
	require.Equal(t, logged, stored)
	leaseStream, err := vl.Query(t.Context(), `{route="`+leaseRoute+`",code_class="2xx"}`)
	require.NoError(t, err)
	require.Len(t, leaseStream, 35, "15 lease renewals, each after a read, and 5 more reads")
}

func testdataLinesOf(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		out = append(out, string(l))
	}
	return out
}

// TestLokiStoreDown stops the Loki-protocol store by its pid while lines
// keep coming: tailing and metrics go on, dropped lines are counted, and
// lines written after the store is back arrive.
func TestLokiStoreDown(t *testing.T) {
	vl := testenv.VictoriaLogsForTest(t)
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 50))
	e := env.exporter(t, func(c *Config) {
		c.Cluster = "down"
		c.Loki.URL = vl.LokiPushURL()
		c.Loki.QueueCapacity = 100
		// Small batches, so the sender is retrying a push while the 3,000
		// lines arrive and the queue overflows: with the default 1 MiB it
		// could take them all into its first batch before that push
		// failed, and nothing was dropped (seen once in CI).
		c.Loki.BatchSize = 4 << 10
		c.Loki.BatchWait = 100 * time.Millisecond
		c.Loki.MinBackoff = 50 * time.Millisecond
		c.Loki.MaxBackoff = 100 * time.Millisecond
		c.Loki.MaxRetries = 2
		c.Loki.Timeout = time.Second
	})
	runExporter(t, e)
	stored := func() []string {
		res, err := vl.Query(t.Context(), `{cluster="down"}`)
		require.NoError(t, err)
		out := make([]string, 0, len(res))
		for _, r := range res {
			out = append(out, r["_msg"]+"\n")
		}
		return out
	}
	waitFor(t, 30*time.Second, "the first lines in the store", func() bool { return len(stored()) == 50 })

	vl.Stop()
	appendFile(t, env.log, leaseLines(50, 3050))
	waitLines(t, e, 3050, 0) // tailing does not wait for the store
	m := scrape(t, exporterCollector{e})
	require.Equal(t, 3050.0, m[req(leaseRoute, "PUT", "200", "kubelet")])
	dropped := m[`cascade_loki_entries_dropped_total{component="gateway",reason="queue_full"}`]
	require.Positive(t, dropped, "lines beyond the queue are dropped and counted")
	require.Equal(t, 3050.0, m[`cascade_loki_entries_enqueued_total{component="gateway"}`]+dropped)

	require.NoError(t, vl.Start())
	waitFor(t, 30*time.Second, "the queue to drain", func() bool {
		m := scrape(t, exporterCollector{e})
		return m[`cascade_loki_queue_length{component="gateway"}`] == 0 &&
			m[`cascade_loki_entries_handed_total{component="gateway"}`] == m[`cascade_loki_entries_enqueued_total{component="gateway"}`]
	})
	later := leaseLines(9000, 9100)
	appendFile(t, env.log, later)
	want := strings.SplitAfter(string(later), "\n")
	want = want[:len(want)-1]
	waitFor(t, 30*time.Second, "the later lines in the store", func() bool {
		have := map[string]bool{}
		for _, s := range stored() {
			have[s] = true
		}
		for _, w := range want {
			if !have[w] {
				return false
			}
		}
		return true
	})
	lintClean(t, e)
}

// TestRealGatewayRotation rotates the real nginx's log the way logrotate
// does (rename, then SIGUSR1 to reopen) while requests go on, and restarts
// the exporter in the middle: the two exporters together count every
// request exactly once.
func TestRealGatewayRotation(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	ng := testenv.NginxForTest(t, cp.URL, testenv.NginxOptions{})
	c := &gatewayClient{t: t, url: ng.URL, token: cp.Token, want: map[string]float64{}, wantTO: map[string]float64{}}
	send := func(n int) {
		for range n {
			require.Equal(t, 200, c.do("GET", "/version", uaKubectl, "/version", "kubectl", "", cp.Token))
		}
	}
	positions := filepath.Join(t.TempDir(), "positions.json")
	newExporter := func() *Exporter {
		cfg := DefaultConfig()
		cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: ng.AccessLog}}
		cfg.PositionsFile = positions
		cfg.PollInterval = 20 * time.Millisecond
		cfg.RotationGrace = 300 * time.Millisecond
		cfg.FromBeginning = true
		e, err := New(cfg, testLogger(t))
		require.NoError(t, err)
		return e
	}
	versionKey := req("/version", "GET", "200", "kubectl")

	first := newExporter()
	stopFirst := runExporter(t, first)
	send(20)
	require.NoError(t, os.Rename(ng.AccessLog, ng.AccessLog+".1"))
	send(10) // nginx still writes to the renamed file
	waitFor(t, 10*time.Second, "30 requests", func() bool { return metric(t, first, versionKey) == 30 })
	stopFirst()

	require.NoError(t, ng.Reopen())
	waitFor(t, 10*time.Second, "nginx to reopen its log", func() bool {
		_, err := os.Stat(ng.AccessLog)
		return err == nil
	})
	send(15)
	second := newExporter()
	runExporter(t, second)
	send(5)
	waitFor(t, 10*time.Second, "20 requests", func() bool { return metric(t, second, versionKey) >= 20 })
	time.Sleep(500 * time.Millisecond) // past the rotation grace: nothing more may come
	require.Equal(t, 30.0, metric(t, first, versionKey))
	require.Equal(t, 20.0, metric(t, second, versionKey))
	require.Equal(t, float64(c.n), metric(t, first, versionKey)+metric(t, second, versionKey))
	require.Equal(t, 0.0, metric(t, second, `cascade_gateway_log_lines_total{result="malformed"}`))
}
