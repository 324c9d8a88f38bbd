package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestRegionOnThanosEndToEnd: three clusters of one region, each with its
// real API server, gateway, renewing kubelets and `cascade exporter`
// (testenv.RegionCluster); `cascade run` scrapes them (target labels
// region and cluster) and remote-writes to Thanos Receive; the rules are evaluated twice through
// Thanos Query, by the Thanos Ruler and by `cascade run` itself
// (cascade.query), both sending to an HA pair of Alertmanagers. One
// cluster's API server is OOM-killed: both evaluators fire the incident,
// and the paging receiver gets exactly one page, for that cluster, naming
// the OOM.
func TestRegionOnThanosEndToEnd(t *testing.T) {
	const interval = 5 * time.Second
	bin := cascadeBinary(t)
	dir := t.TempDir()
	ams, hooks := haAlertmanagers(t, time.Second)
	thanos := startThanos(t, interval, 0, ams.URLs())
	var clusters []*testenv.RegionCluster
	var targets strings.Builder
	for _, name := range []string{"eu1-a", "eu1-b", "eu1-c"} {
		c := testenv.RegionClusterForTest(t, bin, name, testenv.RegionClusterOptions{})
		clusters = append(clusters, c)
		fmt.Fprintf(&targets, "      - {targets: [%q], labels: {region: eu-1, cluster: %s}}\n", c.ExporterAddr, name)
	}

	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  scrape_interval: %s
  evaluation_interval: %s
scrape_configs:
  - job_name: cascade-exporter
    static_configs:
%salerting:
  alertmanagers:
    - static_configs: [{targets: [%q, %q]}]
%scascade:
  storage: {path: data}
  query: {url: %s}
`, interval, interval, targets.String(), strings.TrimPrefix(ams.Peers[0].URL, "http://"), strings.TrimPrefix(ams.Peers[1].URL, "http://"),
		remoteWriteToThanos(thanos, 0), thanos.Query.URL))
	startRun(t, bin, dir, cfgPath, addr)

	// Healthy: every cluster's leases fresh, seen through Thanos, and
	// both evaluators evaluating without failure for a while.
	qapi := thanosAPI(t, thanos.Query.URL)
	require.Eventually(t, func() bool {
		return len(queryVector(t, qapi, `cascade_node_leases{state="fresh"} > 0`)) == 3
	}, 90*time.Second, time.Second, "the leases of every cluster never reached Thanos fresh")
	awaitRulerHealthy(t, thanos.Ruler)
	runFailures := scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total")
	rulerFailures := metricSum(t, thanos.Ruler.URL+"/metrics", "prometheus_rule_evaluation_failures_total", nil)
	time.Sleep(3 * interval)
	require.Zero(t, hooks.Count("page"), "no page while healthy")
	require.Equal(t, runFailures, scrapeValue(t, addr, "prometheus_rule_evaluation_failures_total"), "cascade run evaluates every rule on Thanos Query")
	require.Equal(t, rulerFailures, metricSum(t, thanos.Ruler.URL+"/metrics", "prometheus_rule_evaluation_failures_total", nil), "the Ruler evaluates every rule")

	require.NoError(t, clusters[1].OOMKill())
	faultAt := time.Now()
	require.Eventually(t, func() bool { return hooks.Count("page") > 0 }, 3*time.Minute, 100*time.Millisecond, "the incident never paged")
	pagedAt := time.Now()
	t.Logf("paged %s after the OOM kill", pagedAt.Sub(faultAt).Round(100*time.Millisecond))

	// Both evaluators fire it.
	require.Eventually(t, func() bool {
		return len(incidentEventsNow(dir)) >= 2 && rulerFiring(t, thanos.Ruler, "ControlPlaneCascadeIncident")
	}, 2*time.Minute, 250*time.Millisecond, "both cascade run and the Thanos Ruler fire the incident")
	events := incidentEventsNow(dir)
	require.Equal(t, "apiserver_oom", events[1].RootCause)
	require.Equal(t, "eu1-b", events[1].Cluster)

	// Each evaluator sends an alert to every Alertmanager at the evaluation
	// that fires it: both are in both by now, as one alert.
	time.Sleep(3 * time.Second)
	want := map[string]string{
		"alertname": "ControlPlaneCascadeIncident", "region": "eu-1", "cluster": "eu1-b", "root_cause": "apiserver_oom",
		"scope": "cluster", "severity": "page", "cascade_incident": "true",
	}
	for _, am := range ams.Peers {
		require.Equal(t, []map[string]string{want}, heldIncidents(t, am), "one incident in each Alertmanager")
	}
	time.Sleep(time.Second + 2*testenv.PeerTimeout)

	require.Equal(t, 1, hooks.Count("page"), "one page for one fault, from two evaluators and two Alertmanagers")
	page := hooks.Received("page")[0]
	require.Len(t, page.Alerts, 1)
	require.Equal(t, want, page.Alerts[0].Labels)
	require.Empty(t, hooks.Received("ticket"), "every symptom alert was inhibited")
}
