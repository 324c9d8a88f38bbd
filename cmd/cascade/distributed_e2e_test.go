package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/routing"
)

// thanosPath is Thanos as a provider runs it behind Cascade: a Receive
// ring (2 replicas, replication factor 2) that `cascade run` remote-writes
// to, a Query over it and over the Ruler, and a Ruler evaluating Cascade's
// rule files through that Query and sending to Alertmanager.
type thanosPath struct {
	receive *testenv.ThanosReceive
	query   *testenv.ThanosQuery
	ruler   *testenv.ThanosRule
}

func startThanosPath(t *testing.T, evalInterval time.Duration, alertmanagers []string) thanosPath {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	var files []string
	for _, name := range rules.FileNames() {
		files = append(files, filepath.Join(root, "rules", name))
	}
	grpc, err := testenv.FreePort()
	require.NoError(t, err)
	p := thanosPath{receive: testenv.ThanosReceiveForTest(t, 2, 2)}
	p.query = testenv.ThanosQueryForTest(t, testenv.ThanosQueryOptions{Endpoints: append(p.receive.GRPCAddresses(), fmt.Sprintf("127.0.0.1:%d", grpc))})
	p.ruler = testenv.ThanosRuleForTest(t, testenv.ThanosRuleOptions{
		RuleFiles: files, QueryURL: p.query.URL, Alertmanagers: alertmanagers, EvalInterval: evalInterval, GRPCPort: grpc,
	})
	return p
}

// awaitRulerHealthy waits until the Ruler's last evaluation of every rule
// succeeded.
func (p thanosPath) awaitRulerHealthy(t *testing.T) {
	t.Helper()
	var bad []string
	ok := assertEventually(func() bool {
		var got struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		resp, err := http.Get(p.ruler.URL + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&got) != nil || len(got.Data.Groups) == 0 {
			return false
		}
		bad = nil
		for _, g := range got.Data.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					bad = append(bad, r.Name+": "+r.Health+" "+r.LastError)
				}
			}
		}
		return len(bad) == 0
	}, 60*time.Second)
	if !ok {
		t.Fatalf("the Thanos Ruler's rules do not evaluate:\n%s", strings.Join(bad, "\n"))
	}
}

// remoteWriteToThanos is the remote_write section of `cascade run` feeding
// the Thanos path. Cascade's own recording rules and alerts stay out of it:
// the Ruler writes the same names, and Query would answer both, so a rule
// joining on a recording would find two series where it wants one.
func (p thanosPath) remoteWriteToThanos(batchSendDeadline time.Duration) string {
	return fmt.Sprintf(`remote_write:
  - url: %s
    queue_config: {batch_send_deadline: %s}
    write_relabel_configs:
      - {source_labels: [__name__], regex: '.*:.*|ALERTS|ALERTS_FOR_STATE', action: drop}
`, p.receive.RemoteWriteURL(), batchSendDeadline)
}

// haAlertmanagers starts two clustered Alertmanagers running the generated
// routing; the recorder gets their page, ticket and automation deliveries.
func haAlertmanagers(t *testing.T, groupWait time.Duration) (*testenv.AlertmanagerCluster, *testenv.Webhooks) {
	t.Helper()
	hooks := testenv.WebhooksForTest(t)
	o := routing.DefaultOptions()
	o.PageURL, o.TicketURL, o.AutomationURL = hooks.URL("page"), hooks.URL("ticket"), hooks.URL("guard")
	o.GroupWait = groupWait
	cfg, err := routing.AlertmanagerConfig(o)
	require.NoError(t, err)
	return testenv.AlertmanagerClusterForTest(t, string(cfg), 2), hooks
}

// metricSum sums the samples of a metric on a /metrics page whose labels
// include match.
func metricSum(t *testing.T, metricsURL, name string, match map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	mf, ok := parseText(t, resp)[name]
	if !ok {
		return 0
	}
	sum := 0.0
metrics:
	for _, m := range mf.Metric {
		for k, v := range match {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue metrics
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// alertsSent are the alerts each evaluator has sent to one Alertmanager.
func alertsSent(t *testing.T, runAddr string, ruler *testenv.ThanosRule, am *testenv.Alertmanager) (run, thanos float64) {
	t.Helper()
	return metricSum(t, "http://"+runAddr+"/metrics", "prometheus_notifications_sent_total", map[string]string{"alertmanager": am.URL + "/api/v2/alerts"}),
		metricSum(t, ruler.URL+"/metrics", "thanos_alert_sender_alerts_sent_total", map[string]string{"alertmanager": strings.TrimPrefix(am.URL, "http://")})
}

// TestAlertmanagerHA: `cascade run` (evaluating on its own TSDB) and the
// Thanos Ruler (evaluating the same rule files through Thanos Query, on
// what `cascade run` remote-writes to Thanos Receive) both send the
// incident to both Alertmanagers of an HA pair: it pages once. The
// Alertmanager that sent the page is then killed and brought back; both
// evaluators send it the firing incident again, and nothing pages again.
func TestAlertmanagerHA(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	ams, hooks := haAlertmanagers(t, time.Second)
	thanos := startThanosPath(t, time.Second, ams.URLs())

	f := &fleet{start: time.Now()}
	target := httptest.NewServer(f)
	defer target.Close()
	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fleet
    static_configs: [{targets: [%q], labels: {cluster: prod-eu-1}}]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q, %q]}]
%scascade:
  storage: {path: data}
`, target.Listener.Addr().String(), strings.TrimPrefix(ams.Peers[0].URL, "http://"), strings.TrimPrefix(ams.Peers[1].URL, "http://"),
		thanos.remoteWriteToThanos(time.Second)))
	startRun(t, bin, dir, cfgPath, addr)

	// Healthy, and the Ruler reads the fleet through Thanos: every rule
	// evaluates (it failed while its own Store API was not yet up).
	thanos.awaitRulerHealthy(t)
	failures := metricSum(t, thanos.ruler.URL+"/metrics", "prometheus_rule_evaluation_failures_total", nil)
	time.Sleep(8 * time.Second)
	require.Zero(t, hooks.Count("page"), "no page while healthy")
	require.Equal(t, failures, metricSum(t, thanos.ruler.URL+"/metrics", "prometheus_rule_evaluation_failures_total", nil), "the Ruler evaluates every rule")

	f.faultAt.Store(time.Now().UnixNano())
	faultAt := time.Now()
	require.Eventually(t, func() bool { return hooks.Count("page") > 0 }, 60*time.Second, 100*time.Millisecond, "the incident never paged")
	t.Logf("paged %s after the OOM", time.Since(faultAt).Round(100*time.Millisecond))
	page := hooks.Received("page")[0]
	require.Len(t, page.Alerts, 1, "one alert: both evaluators' are one to Alertmanager")
	require.Equal(t, map[string]string{
		"alertname": "ControlPlaneCascadeIncident", "cluster": "prod-eu-1", "root_cause": "apiserver_oom",
		"scope": "cluster", "severity": "page", "cascade_incident": "true",
	}, page.Alerts[0].Labels, "the same labels from both evaluators: no replica or tenant label")
	for i, am := range ams.Peers {
		run, th := alertsSent(t, addr, thanos.ruler, am)
		require.Positive(t, run, "cascade run sent to Alertmanager %d", i)
		require.Positive(t, th, "the Thanos Ruler sent to Alertmanager %d", i)
	}

	// The Alertmanager that paged dies and comes back without its state
	// on disk: it gets the notification log from its peer.
	sender := -1
	for i, am := range ams.Peers {
		if metricSum(t, am.URL+"/metrics", "alertmanager_notifications_total", map[string]string{"integration": "webhook"}) > 0 {
			sender = i
		}
	}
	require.GreaterOrEqual(t, sender, 0, "an Alertmanager sent the page")
	am := ams.Peers[sender]
	am.Kill()
	time.Sleep(3 * time.Second)
	require.NoError(t, am.Start())
	require.NoError(t, ams.WaitClustered(60*time.Second))
	runBefore, thanosBefore := alertsSent(t, addr, thanos.ruler, am)
	require.Eventually(t, func() bool {
		run, th := alertsSent(t, addr, thanos.ruler, am)
		return run > runBefore && th > thanosBefore
	}, 75*time.Second, 250*time.Millisecond, "both evaluators send the firing incident again within their resend delay (1m)")
	// Long enough for it to have paged: group wait, then its turn in the
	// cluster after its peer's.
	time.Sleep(time.Second + 2*testenv.PeerTimeout + 2*time.Second)
	require.Equal(t, 1, hooks.Count("page"), "the restarted Alertmanager must not page again")
	require.Empty(t, hooks.Received("ticket"), "every symptom alert was inhibited")
}
