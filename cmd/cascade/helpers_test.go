package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/rules/routing"
)

// routedAlertmanager starts a real Alertmanager running the generated
// routing; the returned recorder gets its page, ticket and automation
// deliveries as "page", "ticket" and "guard".
func routedAlertmanager(t *testing.T, groupWait time.Duration) (*testenv.Alertmanager, *testenv.Webhooks) {
	t.Helper()
	cfg, hooks := routedConfig(t, groupWait)
	return testenv.AlertmanagerForTest(t, cfg), hooks
}

// routedConfig is the generated routing delivering to a new recorder as
// "page", "ticket" and "guard".
func routedConfig(t *testing.T, groupWait time.Duration) (string, *testenv.Webhooks) {
	t.Helper()
	hooks := testenv.WebhooksForTest(t)
	o := routing.DefaultOptions()
	o.PageURL, o.TicketURL, o.AutomationURL = hooks.URL("page"), hooks.URL("ticket"), hooks.URL("guard")
	o.GroupWait = groupWait
	cfg, err := routing.AlertmanagerConfig(o)
	require.NoError(t, err)
	return string(cfg), hooks
}

// freeAddr is a free loopback address for `cascade run` to listen on.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	require.NoError(t, err)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// writeRunConfig writes `cascade run`'s configuration to dir/cascade.yml
// and returns its path.
func writeRunConfig(t *testing.T, dir, config string) string {
	t.Helper()
	path := filepath.Join(dir, "cascade.yml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o644))
	return path
}

// startRun starts `cascade run` in dir with the configuration at cfgPath,
// listening on addr, with the node-lease and API-memory exporters off, and
// the extra flags given. It is killed when the test ends, and its log's tail
// is shown if the test failed.
func startRun(t *testing.T, bin, dir, cfgPath, addr string, extra ...string) *testenv.Process {
	t.Helper()
	args := append([]string{"run", "--config.file=" + cfgPath,
		"--web.listen-address=" + addr, "--no-exporter.nodelease", "--no-exporter.apimemory"}, extra...)
	proc, err := testenv.StartProcess(dir, "cascade-run", bin, args...)
	require.NoError(t, err)
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			t.Logf("cascade run (pid %d) log:\n%s", proc.Pid(), proc.LogTail(6000))
		}
	})
	return proc
}

// awaitOnePage waits up to a minute for the first page and returns it; if
// none comes it fails with what Alertmanager holds and the lines of cascade
// run's /metrics (on addr) that start with any of metricPrefixes.
func awaitOnePage(t *testing.T, am *testenv.Alertmanager, hooks *testenv.Webhooks, addr string, metricPrefixes ...string) testenv.WebhookMessage {
	t.Helper()
	if !assertEventually(func() bool { return hooks.Count("page") == 1 }, 60*time.Second) {
		var amAlerts []byte
		if resp, err := http.Get(am.URL + "/api/v2/alerts"); err == nil {
			amAlerts, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		t.Fatalf("the incident never paged; guard %d, ticket %d; alertmanager holds %s; cascade run's own metrics:\n%s",
			hooks.Count("guard"), hooks.Count("ticket"), amAlerts, selfMetrics(addr, metricPrefixes...))
	}
	return hooks.Received("page")[0]
}

// incidentEvents waits until the incident journal of the `cascade run` in
// dir holds n events, and returns them.
func incidentEvents(t *testing.T, dir string, n int) []incident.Event {
	t.Helper()
	journalDir := filepath.Join(dir, "data", "incidents")
	require.Eventually(t, func() bool {
		events, _ := incident.Journal(journalDir)
		return len(events) == n
	}, 10*time.Second, 100*time.Millisecond)
	events, err := incident.Journal(journalDir)
	require.NoError(t, err)
	return events
}
