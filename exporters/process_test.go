package exporters

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// TestProcessMetricsMatchClientGolang: the same series as client_golang's
// process collector, with the same types and values, less the network
// namespace's counters.
func TestProcessMetricsMatchClientGolang(t *testing.T) {
	ours := appendedFamilies(t, NewProcessMetrics())
	theirs := gatherAll(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	delete(theirs, "process_network_receive_bytes_total")
	delete(theirs, "process_network_transmit_bytes_total")
	require.Len(t, ours, len(theirs))
	for name, want := range theirs {
		got, ok := ours[name]
		require.True(t, ok, "%s missing", name)
		require.Equal(t, want.GetType(), got.GetType(), name)
		w, g := value(want.Metric[0]), value(got.Metric[0])
		switch name {
		case "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds":
			require.InEpsilon(t, w+1, g+1, 0.5, name) // read at different moments
		default:
			require.Equal(t, w, g, name)
		}
	}
}

// appendedFamilies parses what a reads as Prometheus's text parser does,
// checks it with promlint, and returns it by family name.
func appendedFamilies(t *testing.T, a TextAppender) map[string]*dto.MetricFamily {
	t.Helper()
	steady, _ := a.AppendSteadyText(nil)
	text := append(a.AppendText(nil), steady...)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	byName, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "%s", text)
	var mfs []*dto.MetricFamily
	for _, mf := range byName {
		mfs = append(mfs, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
	return byName
}

func gatherAll(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return byName
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return m.Gauge.GetValue()
}
