package nodelease

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/internal/kube"
	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// deadKubeClient is a client of a kubeconfig whose server is dead.
func deadKubeClient(t *testing.T) kubernetes.Interface {
	t.Helper()
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
	return client
}

// TestShutdownWithDeadServer: with client-go's watch-list, a failed watch
// call is retried after a backoff sleep that does not end with the context
// (up to 30 s and more), so SIGTERM waited for it. The exporter's watches
// use list and watch, whose retries end with the context.
func TestShutdownWithDeadServer(t *testing.T) {
	exp, err := New(DefaultConfig(), deadKubeClient(t), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- exp.Run(ctx) }()
	// Four failed calls in, the next retry is seconds away: stop just after
	// a failure, at the start of the longest wait.
	require.Eventually(t, func() bool { return exp.leaseWatch.errors.Load() >= 4 }, 60*time.Second, time.Millisecond)
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of the end of its context")
	}
}

// TestDeadServerIsLoggedOnce points the exporter at a kubeconfig whose
// server is dead. Before, nothing was logged at info level for some 40 s
// (only cascade_node_lease_watch_up 0 said it): the probe logged only a
// failure after a success, and the watch's retries inside client-go were
// silent. Now each of the probe, the lease watch and the node watch says it
// is failing once, at once, and not again at every retry.
func TestDeadServerIsLoggedOnce(t *testing.T) {
	client := deadKubeClient(t)
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

// TestErrorsCountedOncePerCall: a failed list was counted twice, by the
// list call and again by the watch error handler it is passed to.
func TestErrorsCountedOncePerCall(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resource := "probe"
		switch {
		case strings.HasSuffix(r.URL.Path, "/leases"):
			resource = "leases"
		case strings.HasSuffix(r.URL.Path, "/nodes"):
			resource = "nodes"
		}
		mu.Lock()
		calls[resource]++
		mu.Unlock()
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	require.NoError(t, err)
	exp, err := New(DefaultConfig(), client, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- exp.Run(ctx) }()
	require.Eventually(t, func() bool { return exp.leaseWatch.errors.Load() >= 3 && exp.nodeWatch.errors.Load() >= 3 },
		60*time.Second, time.Millisecond)
	stop()
	require.NoError(t, <-done)
	srv.Close()
	mu.Lock()
	defer mu.Unlock()
	for resource, h := range map[string]*watchHealth{"leases": &exp.leaseWatch, "nodes": &exp.nodeWatch} {
		// A call cut short by the shutdown is not counted.
		require.InDelta(t, calls[resource], h.errors.Load(), 1, "%s: %d calls", resource, calls[resource])
	}
}
