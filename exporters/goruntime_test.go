package exporters

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// TestGoRuntimeMatchesClientGolang: the same families as client_golang's
// default Go collector, with the same types, labels and values. The
// garbage collector is off while both are read, so its settings and results
// (the pause summary, the last GC) must be equal; the memory figures move
// with what the test itself allocates, so client_golang's reading must lie
// between two of ours.
func TestGoRuntimeMatchesClientGolang(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// The runtime counts objects per processor and adds them up now and
	// then: 100,000 objects kept alive make its few thousand either way
	// small beside the count.
	ballast := make([]*[16]byte, 100_000)
	for i := range ballast {
		ballast[i] = new([16]byte)
	}
	defer runtime.KeepAlive(ballast)
	g := NewGoRuntime()
	before := appendedFamilies(t, g)
	theirs := gatherAll(t, collectors.NewGoCollector())
	after := appendedFamilies(t, g)

	require.Len(t, before, len(theirs))
	for name, want := range theirs {
		lo, ok := before[name]
		require.True(t, ok, "%s missing", name)
		hi := after[name]
		require.Equal(t, want.GetType(), lo.GetType(), name)
		require.Len(t, lo.Metric, len(want.Metric), name)
		switch name {
		case "go_gc_duration_seconds":
			require.Equal(t, want.Metric[0].GetSummary().GetSampleCount(), lo.Metric[0].GetSummary().GetSampleCount())
			require.Equal(t, want.Metric[0].GetSummary().GetSampleSum(), lo.Metric[0].GetSummary().GetSampleSum())
			require.Equal(t, quantiles(want.Metric[0]), quantiles(lo.Metric[0]))
		case "go_info":
			require.Equal(t, want.Metric[0].GetLabel()[0].GetValue(), lo.Metric[0].GetLabel()[0].GetValue())
		case "go_memstats_alloc_bytes_total", "go_memstats_mallocs_total", "go_memstats_frees_total":
			w := value(want.Metric[0])
			require.LessOrEqual(t, value(lo.Metric[0]), w, name)
			require.LessOrEqual(t, w, value(hi.Metric[0]), name)
		case "go_memstats_alloc_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_heap_objects",
			"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_sys_bytes",
			"go_memstats_sys_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_stack_sys_bytes",
			"go_memstats_mspan_inuse_bytes", "go_memstats_mspan_sys_bytes", "go_memstats_other_sys_bytes",
			"go_memstats_gc_sys_bytes", "go_memstats_buck_hash_sys_bytes", "go_memstats_heap_released_bytes",
			"go_memstats_mcache_inuse_bytes", "go_memstats_mcache_sys_bytes", "go_memstats_next_gc_bytes":
			// They move with what the test allocates between the three
			// readings, mostly one way: client_golang's lies between
			// ours, give or take 2 %.
			w, a, b := value(want.Metric[0]), value(lo.Metric[0]), value(hi.Metric[0])
			slack := 0.02 * max(a, b)
			if name == "go_memstats_other_sys_bytes" {
				slack += 256 << 10 // the runtime's odds and ends, the race detector's too
			}
			require.GreaterOrEqual(t, w, min(a, b)-slack, name)
			require.LessOrEqual(t, w, max(a, b)+slack, name)
		case "go_goroutines", "go_threads":
			// The registry gathers in goroutines of its own.
			require.InDelta(t, value(want.Metric[0]), value(lo.Metric[0]), 8, name)
			require.Positive(t, value(lo.Metric[0]), name)
		default: // the GC's settings and results, fixed while it is off
			require.Equal(t, value(want.Metric[0]), value(lo.Metric[0]), name)
			require.Equal(t, value(lo.Metric[0]), value(hi.Metric[0]), name)
		}
	}
}

func quantiles(m *dto.Metric) map[float64]float64 {
	out := map[float64]float64{}
	for _, q := range m.GetSummary().GetQuantile() {
		out[q.GetQuantile()] = q.GetValue()
	}
	return out
}

// TestGoRuntimeAllocatesNothing: a scrape's go_* series come from buffers
// kept from the last scrape; allocating per scrape is what made
// client_golang's collector the larger part of the exporter's garbage.
func TestGoRuntimeAllocatesNothing(t *testing.T) {
	g := NewGoRuntime()
	b := g.AppendText(nil)
	allocs := testing.AllocsPerRun(20, func() { b = g.AppendText(b[:0]) })
	require.Zero(t, allocs)
}
