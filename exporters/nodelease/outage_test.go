package nodelease

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/kube"
	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestDeadServerIsLoggedOnce points the exporter at a kubeconfig whose
// server is dead. Before, nothing was logged at info level for some 40 s
// (only cascade_node_lease_watch_up 0 said it): the probe logged only a
// failure after a success, and the watch's retries inside client-go were
// silent. Now each of the probe, the lease watch and the node watch says it
// is failing once, at once, and not again at every retry.
func TestDeadServerIsLoggedOnce(t *testing.T) {
	port, err := testenv.FreePort() // nothing listens there
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}
users:
- name: exporter
  user: {token: not-a-real-token}
contexts:
- name: dead
  context: {cluster: dead, user: exporter}
current-context: dead
`, port), 0o600))
	client, _, err := kube.NewClient(kube.Config{Kubeconfig: kubeconfig}, "cascade-test")
	require.NoError(t, err)

	cfg := DefaultConfig()
	cfg.ProbeInterval, cfg.ProbeTimeout = 100*time.Millisecond, 100*time.Millisecond
	logger, logs := logtest.New()
	exp, err := New(cfg, client, logger)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- exp.Run(ctx) }()

	start := time.Now()
	for _, what := range []string{"API server probe failing", "lease watch failing", "node watch failing"} {
		for logs.Count(what) == 0 {
			require.Less(t, time.Since(start), 10*time.Second, "%q not logged; the log so far:\n%s", what, logs)
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Many retries later, still one line each.
	for {
		m := scrape(t, exp)
		if m[`cascade_node_lease_watch_errors_total{resource="probe"}`] >= 10 &&
			m[`cascade_node_lease_watch_errors_total{resource="leases"}`] >= 3 &&
			m[`cascade_node_lease_watch_errors_total{resource="nodes"}`] >= 3 {
			break
		}
		require.Less(t, time.Since(start), 30*time.Second, "not enough retries: %v", m)
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	require.NoError(t, <-done)
	out := logs.String()
	for _, what := range []string{"API server probe failing", "lease watch failing", "node watch failing"} {
		require.Equal(t, 1, logs.Count(what), "%q once:\n%s", what, out)
	}
	require.Equal(t, 3, logs.Count("level=WARN"), "nothing else is a warning, shutdown included:\n%s", out)
	require.Contains(t, out, "connection refused", "the cause is in the log")
}
