package apimemory

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestShutdownWithDeadServer: the pod watch against a dead API server
// retried inside client-go's watch-list after backoff sleeps that do not end
// with the context, so shutdown waited for them; it lists and watches now.
// The failure is logged once, by the exporter, not at every retry by
// client-go (whose log `cascade` sends to the same place, as here).
func TestShutdownWithDeadServer(t *testing.T) {
	port, err := testenv.FreePort() // nothing listens there
	require.NoError(t, err)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", port)})
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Pods.Enabled = true
	logger, logs := logtest.New()
	klog.SetSlogLogger(logger.With("component", "client-go"))
	t.Cleanup(klog.ClearLogger)
	e, err := New(cfg, client, logger)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	// Four failed calls in, the next retry is seconds away: stop just after
	// a failure, at the start of the longest wait.
	require.Eventually(t, func() bool { return testutil.ToFloat64(e.sourceErrors.WithLabelValues(kindPods)) >= 4 },
		60*time.Second, time.Millisecond)
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of the end of its context")
	}
	require.Equal(t, 1, logs.Count("level=WARN"), "one warning for four failed calls:\n%s", logs)
	require.Equal(t, 1, logs.Count("cannot list or watch pods"))
	require.Zero(t, logs.Count("level=ERROR")+logs.Count("level=INFO"), "and nothing else:\n%s", logs)
}
