package exporters

import (
	"bytes"
	"os"
	"path/filepath"
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

// TestOpenFDsCounted: the count the kernel gives as /proc/self/fd's size,
// and the listing where it does not, both follow descriptors opened and
// closed.
func TestOpenFDsCounted(t *testing.T) {
	p := NewProcessMetrics().(*processMetrics)
	listing := func() uint64 {
		entries, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return uint64(len(entries)) - 1 // less the listing's own
	}
	byListing := &processMetrics{proc: p.proc}
	for _, q := range []*processMetrics{p, byListing} {
		before, ok := q.openFDs()
		require.True(t, ok)
		require.Equal(t, listing(), before)
		var files []*os.File
		for range 10 {
			f, err := os.Open(os.DevNull)
			require.NoError(t, err)
			files = append(files, f)
		}
		after, ok := q.openFDs()
		require.True(t, ok)
		require.Equal(t, before+10, after)
		for _, f := range files {
			require.NoError(t, f.Close())
		}
		now, _ := q.openFDs()
		require.Equal(t, before, now)
	}
}

func TestReadStatm(t *testing.T) {
	f, err := os.Open("/proc/self/statm")
	require.NoError(t, err)
	defer f.Close()
	for range 2 { // read again from the start
		size, resident, err := readStatm(f)
		require.NoError(t, err)
		require.Positive(t, resident)
		require.GreaterOrEqual(t, size, resident)
	}
	for _, bad := range []string{"", "12", "x 3 4", "1 -2 3", "99999999999999999999 1"} {
		path := filepath.Join(t.TempDir(), "statm")
		require.NoError(t, os.WriteFile(path, []byte(bad), 0o644))
		f, err := os.Open(path)
		require.NoError(t, err)
		_, _, err = readStatm(f)
		require.Error(t, err, "%q", bad)
		f.Close()
	}
	_, _, err = readStatm(nil)
	require.Error(t, err)
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
