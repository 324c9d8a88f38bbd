package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
)

// fleet serves the metric contract of a 500-node cluster whose API server
// OOMs when told to: the exporters themselves are tested against real
// components; here the subject is what `cascade run` makes of their output.
type fleet struct {
	start   time.Time
	faultAt atomic.Int64 // Unix ns; 0 while healthy
}

func (f *fleet) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	up := now.Sub(f.start).Seconds()
	var sinceFault float64
	fault := f.faultAt.Load() != 0
	if fault {
		sinceFault = now.Sub(time.Unix(0, f.faultAt.Load())).Seconds()
	}
	b := &strings.Builder{}
	line := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
	route := `route="/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",client="kubelet"`
	line("# TYPE cascade_apiserver_oom_kills_total counter")
	line("# TYPE cascade_apiserver_restarts_total counter")
	line("# TYPE cascade_gateway_requests_total counter")
	line("# TYPE cascade_gateway_timeouts_total counter")
	line(`cascade_apiserver_memory_limit_bytes{replica="a"} 4e9`)
	if fault {
		line(`cascade_apiserver_oom_kills_total{replica="a"} 1`)
		line(`cascade_apiserver_restarts_total{replica="a"} 1`)
		line(`cascade_apiserver_up{replica="a"} 0`)
		line(`cascade_node_lease_watch_up 0`)
	} else {
		line(`cascade_apiserver_memory_working_set_bytes{replica="a"} 2e9`)
		line(`cascade_apiserver_oom_kills_total{replica="a"} 0`)
		line(`cascade_apiserver_restarts_total{replica="a"} 0`)
		line(`cascade_apiserver_up{replica="a"} 1`)
		line(`cascade_node_lease_watch_up 1`)
		line(`cascade_node_leases{state="fresh"} 500`)
		line(`cascade_node_leases{state="late"} 0`)
		line(`cascade_node_leases{state="expired"} 0`)
		line(`cascade_nodes{condition="ready"} 500`)
		line(`cascade_nodes{condition="not_ready"} 0`)
		line(`cascade_nodes{condition="unknown"} 0`)
	}
	// 50 renewals a second; after the fault every retry times out, at twice
	// the rate.
	line(`cascade_gateway_requests_total{%s,method="PUT",code="200"} %f`, route, 50*(up-sinceFault))
	line(`cascade_gateway_requests_total{%s,method="PUT",code="504"} %f`, route, 100*sinceFault)
	line(`cascade_gateway_timeouts_total{%s} %f`, route, 100*sinceFault)
	line(`cascade_gateway_log_lines_total{result="parsed"} %f`, 50*up+50*sinceFault)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(b.String()))
}

// TestIncidentEndToEnd runs `cascade run` on a cluster whose API server
// OOMs, with a real Alertmanager running the generated routing and a real
// Loki-protocol store: one page naming the OOM, phases in the journal and in
// the store; then `cascade run` is killed and restarted mid-incident (no
// second page, no second onset), and the store dies (evaluation goes on).
func TestIncidentEndToEnd(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()

	f := &fleet{start: time.Now()}
	target := httptest.NewServer(f)
	defer target.Close()

	am, hooks := routedAlertmanager(t, time.Second)
	logs := testenv.VictoriaLogsForTest(t)

	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fleet
    static_configs: [{targets: [%q], labels: {cluster: prod-eu-1}}]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
cascade:
  storage: {path: data}
  loki: {url: %q}
`, target.Listener.Addr().String(), strings.TrimPrefix(am.URL, "http://"), logs.LokiPushURL()))
	proc := startRun(t, bin, dir, cfgPath, addr)

	// A healthy minute's worth of baseline, compressed: no incident after
	// eight evaluations of each rule group.
	evaluatedAtLeast(t, addr, 8)
	require.Zero(t, hooks.Count("page"), "no page while healthy")

	f.faultAt.Store(time.Now().UnixNano())
	faultAt := time.Now()
	page := awaitOnePage(t, am, hooks, addr,
		"prometheus_rule_evaluation_failures_total", "prometheus_notifications_", "prometheus_target_scrapes_", "prometheus_rule_group_last_duration", "up")
	t.Logf("paged %s after the OOM", time.Since(faultAt).Round(time.Second))
	require.Equal(t, "apiserver_oom", page.Alerts[0].Labels["root_cause"])
	require.Equal(t, "prod-eu-1", page.Alerts[0].Labels["cluster"])

	events := incidentEvents(t, dir, 2)
	require.Equal(t, incident.Onset, events[0].Phase)
	require.Equal(t, incident.Escalation, events[1].Phase)
	require.Equal(t, "apiserver_oom", events[1].RootCause)

	// The phase events reach the Loki-protocol store.
	require.Eventually(t, func() bool {
		lines, err := logs.Query(t.Context(), `{source="cascade",kind="incident"}`)
		return err == nil && len(lines) == 2
	}, 30*time.Second, 250*time.Millisecond, "incident events never reached the store")

	// Killed mid-incident and restarted: no second page, no second onset.
	proc.Kill()
	startRun(t, bin, dir, cfgPath, addr)
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_notifications_sent_total") > 0 },
		30*time.Second, 250*time.Millisecond, "the restarted run never sent the firing incident again")
	time.Sleep(3 * time.Second) // a second page would come within group_wait: waiting is the test
	require.Equal(t, 1, hooks.Count("page"), "a restart must not page again")
	events, err := incident.Journal(filepath.Join(dir, "data", "incidents"))
	require.NoError(t, err)
	require.Len(t, events, 2, "the incident stayed open across the restart: %+v", events)

	// The store dies: evaluation goes on and the sender counts what it drops.
	logs.Stop()
	before := scrapeValue(t, addr, "prometheus_rule_evaluations_total")
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_rule_evaluations_total") > before+20 },
		30*time.Second, 250*time.Millisecond, "evaluation stalled while Loki was down")
	require.Empty(t, hooks.Received("ticket"), "every symptom alert was inhibited")
}

// evaluatedAtLeast waits until every rule group of the run at addr was
// evaluated n times.
func evaluatedAtLeast(t *testing.T, addr string, n float64) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		mf, ok := parseText(t, resp)["prometheus_rule_group_iterations_total"]
		if !ok || len(mf.Metric) == 0 {
			return false
		}
		for _, m := range mf.Metric {
			if m.GetCounter().GetValue() < n {
				return false
			}
		}
		return true
	}, 60*time.Second, 250*time.Millisecond, "the rule groups were not evaluated %v times", n)
}

func assertEventually(cond func() bool, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// selfMetrics returns the lines of cascade run's /metrics that start with
// any of the prefixes, for failure messages.
func selfMetrics(addr string, prefixes ...string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// scrapeValue sums the samples of one metric on cascade run's /metrics.
func scrapeValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	mfs := parseText(t, resp)
	sum := 0.0
	if mf, ok := mfs[name]; ok {
		for _, m := range mf.Metric {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func parseText(t *testing.T, resp *http.Response) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return mfs
}
