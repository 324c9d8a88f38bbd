package apimemory

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/internal/contract"
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
var memoryMetrics = names(contract.APIServerWorkingSet, contract.APIServerLimit, contract.APIServerOOMKills,
	contract.APIServerRestarts, contract.APIServerUp)

func names(ms ...contract.Metric) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// headers are the HELP and TYPE lines of every family the exporter serves.
func headers() string {
	var b strings.Builder
	for _, m := range []contract.Metric{contract.APIServerWorkingSet, contract.APIServerLimit, contract.APIServerOOMKills,
		contract.APIServerRestarts, contract.APIServerUp, contract.APIServerSourceErrors, contract.APIServerPodWatchUp} {
		b.WriteString(m.Header())
	}
	return b.String()
}

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
	return testutil.GatherAndCompare(reg, strings.NewReader(headers()+expected+"\n"), names...)
}

func requireLintClean(t testing.TB, e *Exporter) {
	t.Helper()
	problems, err := testutil.CollectAndLint(promCollector{e})
	require.NoError(t, err)
	require.Empty(t, problems)
}
