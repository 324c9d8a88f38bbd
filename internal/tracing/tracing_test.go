package tracing

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"

	"github.com/cascade-sre/cascade/internal/runconfig"
	"github.com/cascade-sre/cascade/internal/testenv"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"", "collector:4318", "127.0.0.1:4318", "[::1]:4318"} {
		require.NoError(t, Validate(runconfig.Tracing{Endpoint: ok}), ok)
	}
	for _, bad := range []string{"collector", ":4318", "collector:0", "collector:http", "http://collector:4318"} {
		err := Validate(runconfig.Tracing{Endpoint: bad})
		require.ErrorContains(t, err, "want host:port", bad)
		m := NewManager("test", nil)
		require.Error(t, m.ApplyConfig(runconfig.Tracing{Endpoint: bad}))
	}
}

// span starts and ends one span with the global tracer, as the engine does.
func span(name string) {
	_, s := otel.Tracer("test").Start(context.Background(), name)
	s.End()
}

func names(r *testenv.OTLPReceiver) []string {
	var out []string
	for _, s := range r.Spans() {
		out = append(out, s.Name)
	}
	return out
}

// TestApplyConfigSwapsTheGlobalProvider: spans go to the receiver
// configured, move with a new configuration, and stop when tracing is off.
func TestApplyConfigSwapsTheGlobalProvider(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	a, b := testenv.OTLPReceiverForTest(t), testenv.OTLPReceiverForTest(t)
	m := NewManager("v1.2.3", nil)
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })

	require.NoError(t, m.ApplyConfig(runconfig.Tracing{Endpoint: a.Endpoint(), Insecure: true}))
	span("first")
	require.Eventually(t, func() bool { return len(a.Spans()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "cascade", a.Spans()[0].Resource["service.name"])
	require.Equal(t, "v1.2.3", a.Spans()[0].Resource["service.version"])

	// The same configuration again changes nothing.
	require.NoError(t, m.ApplyConfig(runconfig.Tracing{Endpoint: a.Endpoint(), Insecure: true}))
	span("still first")
	require.Eventually(t, func() bool { return len(a.Spans()) == 2 }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, m.ApplyConfig(runconfig.Tracing{Endpoint: b.Endpoint(), Insecure: true}))
	span("second")
	require.Eventually(t, func() bool { return len(b.Spans()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"second"}, names(b))

	require.NoError(t, m.ApplyConfig(runconfig.Tracing{}))
	span("off")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, []string{"first", "still first"}, names(a))
	require.Equal(t, []string{"second"}, names(b))
	_, off := otel.Tracer("test").Start(context.Background(), "off")
	require.False(t, off.IsRecording(), "tracing off: spans are no-ops")
}

// TestExportErrorsAreCounted: a receiver that is not there costs a logged,
// counted error per failed export, nothing else.
func TestExportErrorsAreCounted(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200") // ms: give up retrying soon
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())

	m := NewManager("test", nil)
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	require.NoError(t, m.ApplyConfig(runconfig.Tracing{Endpoint: dead, Insecure: true}))
	start := time.Now()
	span("lost")
	require.Less(t, time.Since(start), 100*time.Millisecond, "ending a span never waits on the receiver")
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.Collector()) > 0 },
		10*time.Second, 20*time.Millisecond, "the failed export was not counted")
}
