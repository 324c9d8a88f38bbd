package apimemory

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/exporters"
)

// promCollector serves an exporters.Collector as a prometheus.Collector, as
// exporters.Set does, without Set's own scrape metrics.
type promCollector struct{ c exporters.Collector }

func (p promCollector) Describe(ch chan<- *prometheus.Desc) { p.c.Describe(ch) }

func (p promCollector) Collect(ch chan<- prometheus.Metric) {
	if err := p.c.Update(ch); err != nil {
		panic(err)
	}
}

var (
	_ exporters.Collector = (*Exporter)(nil)
	_ exporters.Runner    = (*Exporter)(nil)
)

// memoryMetrics are the contract's series; self-metrics are checked apart.
var memoryMetrics = []string{
	"cascade_apiserver_memory_working_set_bytes",
	"cascade_apiserver_memory_limit_bytes",
	"cascade_apiserver_oom_kills_total",
	"cascade_apiserver_restarts_total",
	"cascade_apiserver_up",
}

const memoryHelp = `
# HELP cascade_apiserver_memory_working_set_bytes Working set of the API server replica: cgroup usage minus inactive file, or RSS when only that is known.
# TYPE cascade_apiserver_memory_working_set_bytes gauge
# HELP cascade_apiserver_memory_limit_bytes Effective memory limit of the API server replica; absent when unknown or unlimited.
# TYPE cascade_apiserver_memory_limit_bytes gauge
# HELP cascade_apiserver_oom_kills_total OOM kills of the API server replica observed by any source.
# TYPE cascade_apiserver_oom_kills_total counter
# HELP cascade_apiserver_restarts_total Process restarts of the API server replica observed by any source.
# TYPE cascade_apiserver_restarts_total counter
# HELP cascade_apiserver_up 1 when the last probe of the API server replica succeeded.
# TYPE cascade_apiserver_up gauge
`

// requireMetrics compares what e serves for names with expected samples,
// given without HELP and TYPE lines.
func requireMetrics(t testing.TB, e *Exporter, expected string, names ...string) {
	t.Helper()
	require.NoError(t, compareMetrics(e, expected, names...))
}

func compareMetrics(e *Exporter, expected string, names ...string) error {
	if len(names) == 0 {
		names = memoryMetrics
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(promCollector{e}); err != nil {
		return err
	}
	return testutil.GatherAndCompare(reg, strings.NewReader(memoryHelp+selfHelp+expected+"\n"), names...)
}

const selfHelp = `
# HELP cascade_apiserver_source_errors_total Failed reads of a source of API server memory: probes, cgroup reads, pod list and watch calls.
# TYPE cascade_apiserver_source_errors_total counter
# HELP cascade_apiserver_pod_watch_up 1 while the watch on API server pods is healthy: their status is current.
# TYPE cascade_apiserver_pod_watch_up gauge
`

func requireLintClean(t testing.TB, e *Exporter) {
	t.Helper()
	problems, err := testutil.CollectAndLint(promCollector{e})
	require.NoError(t, err)
	require.Empty(t, problems)
}
