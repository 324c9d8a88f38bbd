package dashboards

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
)

// scrapeLoopSeries are the series every scrape writes next to the target's
// own (Prometheus's scrape loop, in Cascade's collector as in Prometheus).
var scrapeLoopSeries = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped",
	"scrape_samples_post_metric_relabeling", "scrape_series_added"}

// ruleEngineSeries are written by the rule engine next to the recording
// rules' output: the alerts' state.
var ruleEngineSeries = []string{"ALERTS", "ALERTS_FOR_STATE"}

// TestDashboardsLive runs the real thing: `cascade run` with all three
// exporters on a real kube-apiserver (nodes, leases, an API server pod with
// a memory limit), a gateway access log, a real Alertmanager and a real
// Loki-protocol store, scraped by Debian's Prometheus. It checks that
//   - every metric any dashboard query names is emitted: by the exporters
//     or Cascade's own instrumentation (gathered from that process's
//     /metrics), by a recording rule of rules/*.yml, by the rule engine
//     (ALERTS) or by the scrape loop (up, scrape_duration_seconds);
//   - every panel of the Cascade-itself dashboard, and the incident
//     dashboards' panels the scenarios do not simulate, return data through
//     Prometheus's query API;
//   - the gateway's Loki panel selects the lines the exporter forwarded.
func TestDashboardsLive(t *testing.T) {
	testenv.RequireLong(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := testenv.BuildCascade(dir)
	require.NoError(t, err)

	cp := testenv.ControlPlaneForTest(t)
	seedCluster(t, cp)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(cp.Token), 0o600))
	logs := testenv.VictoriaLogsForTest(t)
	am := testenv.AlertmanagerForTest(t, "route: {receiver: none}\nreceivers: [{name: none}]\n")

	accessLog := filepath.Join(dir, "access.log")
	require.NoError(t, os.WriteFile(accessLog, []byte(accessLines(time.Now())), 0o644))

	port, err := testenv.FreePort()
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "cascade.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cascade
    static_configs: [{targets: [%q], labels: {cluster: live}}]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
cascade:
  storage: {path: data}
  loki: {url: %q}
`, addr, strings.TrimPrefix(am.URL, "http://"), logs.LokiPushURL())), 0o644))
	proc, err := testenv.StartProcess(dir, "cascade-run", bin, "run",
		"--config.file="+cfg, "--web.listen-address="+addr, "--kubeconfig="+kubeconfig,
		"--apimemory.endpoint=apiserver-0="+cp.URL+"/metrics", "--apimemory.bearer-token-file="+tokenFile,
		"--apimemory.insecure-skip-tls-verify", "--apimemory.poll-interval=1s", "--apimemory.timeout=1s",
		"--exporter.gateway", "--gateway.log=nginx-json:"+accessLog, "--gateway.from-beginning",
		"--gateway.cluster=live", "--gateway.loki.url="+logs.LokiPushURL(), "--gateway.loki.batch-wait=100ms")
	require.NoError(t, err)
	t.Cleanup(func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("cascade run log:\n%s", proc.LogTail(4000))
		}
	})

	prom := testenv.PrometheusForTest(t, fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: cascade
    static_configs: [{targets: [%q], labels: {cluster: live}}]
`, addr))
	// Everything is seen once the lease counts, the pod's memory limit and the
	// gateway's lines are served and scraped.
	for _, q := range []string{`cascade_node_leases{state="fresh"} > 0`, `cascade_apiserver_memory_limit_bytes`, `cascade_gateway_log_lines_total{result="parsed"} > 0`, `prometheus_rule_group_last_duration_seconds`} {
		require.Eventually(t, func() bool {
			s, err := prom.Query(ctx, q)
			return err == nil && len(s) > 0
		}, 60*time.Second, 250*time.Millisecond, "never saw %s", q)
	}

	// Every metric a query names is emitted by something real, and the
	// panels that get their data from a live Cascade return data, once the
	// last 15 s hold enough of it for their rates.
	vars := map[string]string{ClusterVar: "live", RegionVar: ".*", "instance": ".*",
		"__rate_interval": "5s", "__range": "20s", "__range_s": "20"}
	var unknown, missing []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		unknown = unknownNames(t, "http://"+addr+"/metrics")
		missing = panelsWithoutData(t, prom, vars)
		if len(unknown)+len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	require.Empty(t, unknown, "queries name metrics that no exporter, recording rule or Cascade's instrumentation emits")
	require.Empty(t, missing, "panels that returned no data from a live cascade run")

	// The gateway's access log panel selects the forwarded lines (its stream
	// selector, run as a LogsQL stream filter in the Loki-protocol store).
	sel, err := Expand(gatewayLogSelector, vars)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		lines, err := logs.Query(ctx, sel)
		return err == nil && len(lines) >= 2
	}, 30*time.Second, 250*time.Millisecond, "the gateway panel's selector %s found no forwarded line", sel)
}

// unknownNames lists the metrics queries name that neither the /metrics at
// url nor the rules emit, as "dashboard / panel: name".
func unknownNames(t *testing.T, url string) []string {
	t.Helper()
	known := emittedNames(t, url)
	var unknown []string
	for _, q := range allQueries(t) {
		names, err := checkQuery(q)
		require.NoError(t, err)
		for _, n := range names {
			if !known[n] {
				unknown = append(unknown, fmt.Sprintf("%s / %s: %s", q.Dashboard, q.Panel, n))
			}
		}
	}
	return unknown
}

// panelsWithoutData runs the query of every panel that gets its data from a
// live Cascade over the last 15 s and returns the panels that got none.
func panelsWithoutData(t *testing.T, prom *testenv.Prometheus, vars map[string]string) []string {
	t.Helper()
	end := time.Now()
	shown := map[string]bool{}
	var panels []string
	for _, q := range allQueries(t) {
		key := q.Dashboard + "/" + q.Panel
		// Annotations (alerts, OOM kills) are shown by the incident test.
		if (q.Dashboard != SelfUID && !liveOnly[key]) || q.PanelType == "variable" || q.PanelType == "annotation" || q.Datasource != "prometheus" {
			continue
		}
		if _, seen := shown[key]; !seen {
			panels = append(panels, key)
			shown[key] = false
		}
		expr, err := Expand(q.Expr, vars)
		require.NoError(t, err)
		got, err := prom.QueryRange(t.Context(), expr, end.Add(-15*time.Second), end, time.Second)
		require.NoError(t, err, expr)
		if len(got) > 0 {
			shown[key] = true
		}
	}
	for key := range liveOnly {
		require.Contains(t, shown, key, "liveOnly names a panel that does not exist")
	}
	var missing []string
	for _, key := range panels {
		if !shown[key] {
			missing = append(missing, key)
		}
	}
	return missing
}

// seedCluster creates what the exporters watch: three Ready nodes with
// fresh leases, and an API server pod with a memory limit.
func seedCluster(t *testing.T, cp *testenv.ControlPlane) {
	t.Helper()
	c, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	now := metav1.NewMicroTime(time.Now())
	for i := range 3 {
		name := fmt.Sprintf("node-%d", i)
		n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		require.NoError(t, err)
		_, err = c.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: ptr(int32(40)), RenewTime: &now},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = c.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-0", Labels: map[string]string{"component": "kube-apiserver"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")}},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// accessLines is an nginx JSON access log: kubelet lease renewals, a 504,
// a kubectl list, and a malformed line.
func accessLines(now time.Time) string {
	line := func(d time.Duration, method, uri, status, ua, rt string) string {
		ts := now.Add(-d)
		return fmt.Sprintf(`{"time":%q,"msec":"%d.%03d","remote_addr":"10.0.0.1","method":%q,"uri":%q,"status":%q,"request_time":%q,"upstream_status":%q,"upstream_response_time":%q,"bytes_sent":"512","user_agent":%q}`+"\n",
			ts.Format(time.RFC3339), ts.Unix(), ts.Nanosecond()/1e6, method, uri, status, rt, status, rt, ua)
	}
	kubelet := "kubelet/v1.37.2 (linux/amd64) kubernetes/abcdef"
	lease := "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-0"
	return line(3*time.Second, "PUT", lease, "200", kubelet, "0.004") +
		line(2*time.Second, "PUT", lease, "504", kubelet, "30.001") +
		line(time.Second, "GET", "/api/v1/pods?limit=500", "200", "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef", "0.120") +
		"not a json line\n"
}

// emittedNames gathers the metric names that really exist: every family of
// a live `cascade run`'s /metrics (with the _bucket, _sum, _count series of
// histograms and summaries), the records of the embedded rule files, the
// rule engine's ALERTS and the scrape loop's series.
func emittedNames(t *testing.T, metricsURL string) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	resp, err := http.Get(metricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	for name, f := range families {
		known[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			known[name+"_sum"], known[name+"_count"] = true, true
		}
	}
	require.True(t, known["cascade_node_leases"] && known["cascade_apiserver_memory_working_set_bytes"] && known["cascade_gateway_requests_total"],
		"the live exporters are not all serving")

	var records []string
	require.NoError(t, fs.WalkDir(rules.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(rules.Files(), path)
		if err != nil {
			return err
		}
		groups, errs := rulefmt.Parse(b, false, model.UTF8Validation)
		if len(errs) > 0 {
			return errs[0]
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					records = append(records, r.Record)
				}
			}
		}
		return nil
	}))
	require.NotEmpty(t, records)
	sort.Strings(records)
	for _, n := range append(append(records, ruleEngineSeries...), scrapeLoopSeries...) {
		known[n] = true
	}
	return known
}
