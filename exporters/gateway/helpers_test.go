package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// allowedRouteSegments is every literal a route may hold.
var allowedRouteSegments = func() map[string]bool {
	m := setOf("api", "apis", "watch", "namespaces", "proxy",
		"{group}", "{version}", "{resource}", "{name}", "{namespace}", "{subresource}", "{check}", "{path}",
		"version", "healthz", "livez", "readyz", "metrics", "slis", "openapi", ".well-known",
		"openid-configuration", "openid", "jwks")
	for _, set := range []map[string]bool{coreResources, knownVersions, knownSubresources, knownNamespaces, namespaceSubresources} {
		for k := range set {
			m[k] = true
		}
	}
	for g, rs := range groupResources {
		m[g] = true
		for r := range rs {
			m[r] = true
		}
	}
	return m
}()

func requireBoundedRoute(t testing.TB, route string) {
	t.Helper()
	if route == RouteOther || route == "/" {
		return
	}
	require.True(t, strings.HasPrefix(route, "/"), "route %q", route)
	for _, seg := range strings.Split(route[1:], "/") {
		require.True(t, allowedRouteSegments[seg], "route %q has segment %q outside the vocabulary", route, seg)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// scrape collects the exporter's metrics into "name{labels}" -> value,
// with labels in name order; histograms give _count and _sum.
func scrape(t testing.TB, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := func(suffix string) string {
				return mf.GetName() + suffix + labelString(m.GetLabel())
			}
			switch {
			case m.Counter != nil:
				out[key("")] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key("")] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func labelString(lps []*dto.LabelPair) string {
	if len(lps) == 0 {
		return ""
	}
	parts := make([]string, 0, len(lps))
	for _, lp := range lps {
		parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// sumMetric adds up every series of name whose labels include match.
func sumMetric(m map[string]float64, name string, match ...string) float64 {
	var sum float64
	for k, v := range m {
		if !strings.HasPrefix(k, name+"{") && k != name {
			continue
		}
		ok := true
		for _, s := range match {
			if !strings.Contains(k, s) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// exporterCollector serves an Exporter through the exporters.Collector
// shape, as the command's exporters.Set does.
type exporterCollector struct{ e *Exporter }

func (c exporterCollector) Describe(ch chan<- *prometheus.Desc) { c.e.Describe(ch) }
func (c exporterCollector) Collect(ch chan<- prometheus.Metric) {
	if err := c.e.Update(ch); err != nil {
		panic(err)
	}
}

func lintClean(t testing.TB, e *Exporter) {
	t.Helper()
	problems, err := testutil.CollectAndLint(exporterCollector{e})
	require.NoError(t, err)
	require.Empty(t, problems)
}

// runExporter runs e until the test ends (or the returned stop is called)
// and checks that Run returned nil.
func runExporter(t testing.TB, e *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or the timeout ends.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitLines(t testing.TB, e *Exporter, parsed, malformed float64) {
	t.Helper()
	var m map[string]float64
	waitFor(t, 20*time.Second, fmt.Sprintf("%v parsed and %v malformed lines", parsed, malformed), func() bool {
		m = scrape(t, exporterCollector{e})
		return m[`cascade_gateway_log_lines_total{result="parsed"}`] >= parsed &&
			m[`cascade_gateway_log_lines_total{result="malformed"}`] >= malformed
	})
	require.Equal(t, parsed, m[`cascade_gateway_log_lines_total{result="parsed"}`], "parsed lines")
	require.Equal(t, malformed, m[`cascade_gateway_log_lines_total{result="malformed"}`], "malformed lines")
}

func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func testdataLines(t testing.TB, name string) [][]byte {
	t.Helper()
	return bytes.Split(bytes.TrimRight(readTestdata(t, name), "\n"), []byte("\n"))
}
