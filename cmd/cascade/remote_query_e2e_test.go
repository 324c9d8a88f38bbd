package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
)

// TestRunOnRemoteQueryAPI runs `cascade run` with cascade.query pointing at a
// real Prometheus that scrapes the cluster (Cascade scrapes nothing itself):
// the incident pages once naming the OOM, the recording rules land in the
// embedded TSDB and never in Prometheus, and when Prometheus dies the rule
// evaluations fail visibly instead of evaluating on nothing.
func TestRunOnRemoteQueryAPI(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()

	f := &fleet{start: time.Now()}
	target := httptest.NewServer(f)
	defer target.Close()
	prom := testenv.PrometheusForTest(t, fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: fleet
    static_configs: [{targets: [%q], labels: {cluster: prod-eu-1}}]
`, target.Listener.Addr().String()))

	am, hooks := routedAlertmanager(t, time.Second)

	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
cascade:
  storage: {path: data}
  query:
    url: %s
    timeout: 2s
    http_headers:
      X-Scope-OrgID: {values: [tenant-1]}
`, strings.TrimPrefix(am.URL, "http://"), prom.URL))
	proc := startRun(t, bin, dir, cfgPath, addr)

	evaluatedAtLeast(t, addr, 8)
	require.Zero(t, hooks.Count("page"), "no page while healthy")
	require.Greater(t, scrapeValue(t, addr, "prometheus_rule_evaluations_total"), 0.0)
	require.Zero(t, scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total"))

	f.faultAt.Store(time.Now().UnixNano())
	faultAt := time.Now()
	page := awaitOnePage(t, am, hooks, addr,
		"prometheus_rule_evaluation_failures_total", "cascade_remote_query_", "prometheus_notifications_")
	t.Logf("paged %s after the OOM, reading Prometheus's query API", time.Since(faultAt).Round(time.Second))
	require.Equal(t, "apiserver_oom", page.Alerts[0].Labels["root_cause"])
	require.Equal(t, "prod-eu-1", page.Alerts[0].Labels["cluster"])

	events := incidentEvents(t, dir, 2)
	require.Equal(t, incident.Escalation, events[1].Phase)
	require.Equal(t, "apiserver_oom", events[1].RootCause)

	require.Greater(t, scrapeValue(t, addr, "cascade_remote_query_requests_total"), 50.0)
	require.Zero(t, scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total"))
	recorded, err := prom.Query(t.Context(), `count({__name__=~"cascade:.+"})`)
	require.NoError(t, err)
	require.Empty(t, recorded, "recording rules are written locally, not into the store")

	// The store dies: evaluations fail, counted, and nothing pages.
	prom.Stop()
	before := scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total")
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total") > before+10 },
		30*time.Second, 250*time.Millisecond, "rule evaluations did not fail with the store down")
	require.NotContains(t, selfMetrics(addr, "cascade_remote_query_requests_total"), `result="error"} 0`, "failed queries are counted")
	require.Equal(t, 1, hooks.Count("page"))

	proc.Stop()
	require.True(t, proc.Exited())
	db, err := tsdb.OpenDBReadOnly(filepath.Join(dir, "data"), t.TempDir(), nil)
	require.NoError(t, err)
	defer db.Close()
	q, err := db.Querier(faultAt.Add(-time.Minute).UnixMilli(), time.Now().UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "cascade:incident_root_cause:info"))
	var causes []string
	for ss.Next() {
		causes = append(causes, ss.At().Labels().Get("cluster")+"/"+ss.At().Labels().Get("root_cause"))
	}
	require.NoError(t, ss.Err())
	require.Equal(t, []string{"prod-eu-1/apiserver_oom"}, causes, "the incident's recording rule is in the embedded TSDB")
}
