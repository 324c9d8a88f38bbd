package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
)

// TestSingleClusterEventsReachLoki: the README's single-cluster setup, no
// cluster or region label anywhere, and a real Loki-protocol store. The
// incident's events reach the store (they used to be dropped as
// invalid_labels: the stream had cluster=""), with no empty label.
func TestSingleClusterEventsReachLoki(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	f := &fleet{start: time.Now()}
	srv := httptest.NewServer(f)
	defer srv.Close()
	logs := testenv.VictoriaLogsForTest(t)

	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fleet
    static_configs:
      - {targets: [%q]}
cascade:
  storage: {path: data}
  loki: {url: %q, timeout: 2s}
`, srv.Listener.Addr().String(), logs.LokiPushURL()))
	startRun(t, bin, dir, cfgPath, addr)
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_rule_evaluations_total") > 0 },
		30*time.Second, 100*time.Millisecond, "the engine never evaluated")

	f.faultAt.Store(time.Now().UnixNano())
	journal := filepath.Join(dir, "data", "incidents")
	require.Eventually(t, func() bool {
		events, err := incident.Journal(journal)
		return err == nil && len(events) >= 2
	}, 90*time.Second, 250*time.Millisecond, "the incident never opened")

	var lines []map[string]string
	require.Eventually(t, func() bool {
		var err error
		lines, err = logs.Query(t.Context(), `{source="cascade",kind="incident"}`)
		return err == nil && len(lines) >= 2
	}, 30*time.Second, 250*time.Millisecond, "the store holds %d incident lines:\n%s", len(lines), selfMetrics(addr, "cascade_loki_"))
	require.Zero(t, scrapeValue(t, addr, "cascade_loki_entries_dropped_total"), selfMetrics(addr, "cascade_loki_"))
	phases := map[string]bool{}
	for _, l := range lines {
		var e incident.Event
		require.NoError(t, json.Unmarshal([]byte(l["_msg"]), &e), l["_msg"])
		require.Equal(t, incident.ScopeCluster, e.Scope)
		require.Empty(t, e.Cluster, "a single cluster has no name")
		require.Equal(t, string(e.Phase), l["phase"])
		require.NotContains(t, l["_stream"], `cluster=`, "no empty cluster label in the stream")
		phases[l["phase"]] = true
	}
	require.True(t, phases["onset"] && phases["escalation"], "onset and escalation arrived: %v", phases)
}
