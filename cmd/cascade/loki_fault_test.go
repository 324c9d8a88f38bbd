package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
)

// TestLokiDownThenBackDuringIncident: the Loki-protocol store is down each
// time an incident opens, then comes back on the same port: once soon
// enough for the sender's retries (the events arrive), once too late (they
// are counted as dropped). Evaluation never stalls, the journal has every
// phase event, and sent + dropped always equals the events produced.
func TestLokiDownThenBackDuringIncident(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	// Two clusters, so that a second incident opens later.
	fleets := []*fleet{{start: time.Now()}, {start: time.Now()}}
	var targets []string
	for _, f := range fleets {
		srv := httptest.NewServer(f)
		defer srv.Close()
		targets = append(targets, srv.Listener.Addr().String())
	}
	logs := testenv.VictoriaLogsForTest(t)

	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fleet
    static_configs:
      - {targets: [%q], labels: {cluster: prod-eu-1}}
      - {targets: [%q], labels: {cluster: prod-eu-2}}
cascade:
  storage: {path: data}
  loki: {url: %q, timeout: 2s}
`, targets[0], targets[1], logs.LokiPushURL()))
	startRun(t, bin, dir, cfgPath, addr)
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_rule_evaluations_total") > 0 },
		30*time.Second, 100*time.Millisecond, "the engine never evaluated")
	evaluatedAtLeast(t, addr, 5) // a healthy baseline

	// evaluating requires every rule group to have been evaluated within
	// the last few intervals.
	evaluating := func() {
		t.Helper()
		oldest := oldestGauge(t, addr, "prometheus_rule_group_last_evaluation_timestamp_seconds")
		require.False(t, math.IsInf(oldest, 1), "no rule group evaluated")
		lag := time.Since(time.Unix(0, int64(oldest*1e9)))
		require.Less(t, lag, 5*time.Second, "a rule group was last evaluated %s ago", lag.Round(time.Millisecond))
	}
	// downFor keeps checking evaluation while the store is down.
	downFor := func(d time.Duration) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
			evaluating()
		}
	}
	journalDir := filepath.Join(dir, "data", "incidents")
	// openIncident turns the fleet's fault on and waits, checking that
	// evaluation goes on, until its onset and escalation are journaled.
	openIncident := func(f *fleet, cluster string) {
		t.Helper()
		f.faultAt.Store(time.Now().UnixNano())
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
			evaluating()
			events, err := incident.Journal(journalDir)
			require.NoError(t, err)
			var phases []incident.Phase
			for _, e := range events {
				if e.Cluster == cluster {
					phases = append(phases, e.Phase)
				}
			}
			if len(phases) >= 2 {
				require.Equal(t, []incident.Phase{incident.Onset, incident.Escalation}, phases[:2])
				return
			}
			require.True(t, time.Now().Before(deadline), "the incident of %s never opened while the store was down", cluster)
		}
	}
	// accounted waits until every journaled event is sent or dropped, and
	// returns how many were produced, sent and dropped.
	accounted := func() (produced int, sent, dropped float64) {
		t.Helper()
		require.Eventually(t, func() bool {
			events, err := incident.Journal(journalDir)
			if err != nil {
				return false
			}
			produced = len(events)
			sent = scrapeValue(t, addr, "cascade_loki_entries_sent_total")
			dropped = scrapeValue(t, addr, "cascade_loki_entries_dropped_total")
			return sent+dropped == float64(produced) && scrapeValue(t, addr, "cascade_loki_queue_length") == 0
		}, 2*time.Minute, 250*time.Millisecond, "events neither sent nor counted as dropped:\n%s", selfMetrics(addr, "cascade_loki_"))
		evaluating()
		return produced, sent, dropped
	}

	// 1. The store goes down, the first control plane OOMs, and the store
	// comes back a few seconds later, well within the sender's retries.
	logs.Stop()
	openIncident(fleets[0], "prod-eu-1")
	downFor(3 * time.Second)
	require.Zero(t, scrapeValue(t, addr, "cascade_loki_entries_sent_total"), "sent while the store was down")
	require.NoError(t, logs.Start())
	produced, sent, dropped := accounted()
	t.Logf("store back soon: %d events, %v sent, %v dropped", produced, sent, dropped)
	require.Equal(t, 2, produced)
	require.Equal(t, 2.0, sent, "the store came back within the retries: the events must arrive")

	// 2. Down again while the second control plane OOMs, and for longer than
	// the sender retries a batch (about a minute at most): dropped, counted.
	logs.Stop()
	openIncident(fleets[1], "prod-eu-2")
	require.Eventually(t, func() bool {
		evaluating()
		return scrapeValue(t, addr, "cascade_loki_entries_dropped_total") >= 2
	}, 3*time.Minute, time.Second, "the sender never gave up its batch:\n%s", selfMetrics(addr, "cascade_loki_"))
	require.NoError(t, logs.Start())
	produced, sent, dropped = accounted()
	t.Logf("store back late: %d events, %v sent, %v dropped", produced, sent, dropped)
	require.Equal(t, 4, produced)
	require.Equal(t, 2.0, sent)
	require.Equal(t, 2.0, dropped)
	require.Contains(t, selfMetrics(addr, "cascade_loki_entries_dropped_total"), `reason="send_failed"} 2`)

	// What was sent is in the store: the first incident's two events.
	var lines []map[string]string
	require.Eventually(t, func() bool {
		var err error
		lines, err = logs.Query(t.Context(), `{source="cascade",kind="incident"}`)
		return err == nil && len(lines) == 2
	}, 30*time.Second, 250*time.Millisecond, "the store holds %d incident lines, want the 2 sent", len(lines))
	for _, l := range lines {
		var e incident.Event
		require.NoError(t, json.Unmarshal([]byte(l["_msg"]), &e), l["_msg"])
		require.Equal(t, "prod-eu-1", e.Cluster)
		require.Equal(t, string(e.Phase), l["phase"])
	}
}

// oldestGauge is the smallest value of a gauge over its series on cascade
// run's /metrics; +Inf when there is none.
func oldestGauge(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	oldest := math.Inf(1)
	if mf, ok := parseText(t, resp)[name]; ok {
		for _, m := range mf.Metric {
			oldest = min(oldest, m.GetGauge().GetValue())
		}
	}
	return oldest
}
