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
)

// TestRunTracesToOTLPAndSwapsOnReload runs `cascade run` with tracing on:
// evaluation cycles and notifications reach an OTLP/HTTP receiver; a reload
// moves them to another receiver, refuses a bad endpoint without changing
// anything, and turns tracing off.
func TestRunTracesToOTLPAndSwapsOnReload(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200") // export every 200 ms; inherited by cascade run
	first, second := testenv.OTLPReceiverForTest(t), testenv.OTLPReceiverForTest(t)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "traced.yml"), []byte(`groups:
  - name: traced
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`), 0o644))
	addr := freeAddr(t)
	// writeConfig writes the configuration and returns its path.
	writeConfig := func(tracing string) string {
		return writeRunConfig(t, dir, `global:
  evaluation_interval: 1s
rule_files: [traced.yml]
cascade:
  storage: {path: data}
`+tracing)
	}
	// By OTLP/HTTP first, then by OTLP/gRPC (Prometheus's default client).
	cfgPath := writeConfig(fmt.Sprintf("tracing: {client_type: http, endpoint: %q, insecure: true, sampling_fraction: 1}\n", first.Endpoint()))
	startRun(t, bin, dir, cfgPath, addr, "--web.enable-lifecycle")

	cycles := func(r *testenv.OTLPReceiver) []testenv.Span {
		var out []testenv.Span
		for _, s := range r.Spans() {
			if s.Name == "rule group evaluation" && s.Attributes["rule_group.name"] == "traced" {
				out = append(out, s)
			}
		}
		return out
	}
	// A cycle whose rule span and (if notified) notification span arrived.
	// Alerts are re-sent once a minute (Prometheus's resend delay), so only
	// the first cycle notifies.
	wholeCycle := func(r *testenv.OTLPReceiver, notified bool) bool {
		spans := r.Spans()
		for _, c := range cycles(r) {
			for _, rule := range spans {
				if rule.Name != "rule" || rule.ParentSpanID != c.SpanID || rule.TraceID != c.TraceID {
					continue
				}
				if !notified {
					return true
				}
				for _, n := range spans {
					if n.Name == "notify" && n.ParentSpanID == rule.SpanID && n.Attributes["alerts.names"] == "AlwaysFiring" {
						return c.Resource["service.name"] == "cascade" && c.Attributes["rule_group.alerts_firing"] == "1"
					}
				}
			}
		}
		return false
	}
	require.Eventually(t, func() bool { return wholeCycle(first, true) }, 30*time.Second, 100*time.Millisecond,
		"no evaluation cycle with its rule and notification spans reached the receiver")

	reload := func() (int, string) {
		resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// waitQuiet waits until r has received nothing new for a second and a
	// half (spans of a cycle already under way may still arrive), then
	// requires it to stay quiet.
	waitQuiet := func(r *testenv.OTLPReceiver) {
		t.Helper()
		n := -1
		require.Eventually(t, func() bool {
			m := len(r.Spans())
			quiet := m == n
			n = m
			return quiet
		}, 15*time.Second, 1500*time.Millisecond)
		time.Sleep(2 * time.Second) // nothing more arrives: waiting is the test
		require.Equal(t, n, len(r.Spans()), "spans still arrive at a receiver no longer configured")
	}

	// Reload to the second receiver: the spans move there.
	writeConfig(fmt.Sprintf("tracing: {endpoint: %q, insecure: true, sampling_fraction: 1}\n", second.GRPCEndpoint()))
	code, body := reload()
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool { return wholeCycle(second, false) }, 30*time.Second, 100*time.Millisecond)
	waitQuiet(first)

	// A bad endpoint: the reload fails, says why, and tracing goes on.
	writeConfig("tracing: {endpoint: \"no-port\"}\n")
	code, body = reload()
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, `tracing.endpoint "no-port"`)
	before := len(cycles(second))
	require.Eventually(t, func() bool { return len(cycles(second)) > before+2 }, 30*time.Second, 100*time.Millisecond,
		"a failed reload stopped tracing")

	// No tracing section: tracing stops.
	writeConfig("")
	code, body = reload()
	require.Equal(t, http.StatusOK, code, body)
	waitQuiet(second)
	require.Zero(t, first.Malformed()+second.Malformed())
	require.Zero(t, scrapeValue(t, addr, "cascade_tracing_errors_total"))
}
