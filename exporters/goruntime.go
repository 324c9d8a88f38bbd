package exporters

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// NewGoRuntime returns the go_* series of client_golang's default Go
// collector (the same names, types and values) written straight as text.
// Through a registry they cost a third of a scrape of 1,000 nodes and most of
// its garbage: a MemStats and a map of samples, a sorted copy of the pause
// history, a protobuf message per series. Here the runtime/metrics samples
// and the pause history are read into buffers kept from scrape to scrape.
func NewGoRuntime() TextAppender {
	g := &goRuntime{samples: make([]metrics.Sample, len(runtimeSamples))}
	for i, name := range runtimeSamples {
		g.samples[i].Name = name
	}
	g.gc.PauseQuantiles = make([]time.Duration, 5)
	return g
}

type goRuntime struct {
	mu      sync.Mutex // scrapes may run at once; the buffers are shared
	samples []metrics.Sample
	gc      debug.GCStats
}

// The runtime/metrics samples read on every scrape, indexed by the
// constants below; the go_memstats_* values are computed from them as
// client_golang does.
var runtimeSamples = [...]string{
	rmGOGC:            "/gc/gogc:percent",
	rmGOMemLimit:      "/gc/gomemlimit:bytes",
	rmGOMAXPROCS:      "/sched/gomaxprocs:threads",
	rmAllocsBytes:     "/gc/heap/allocs:bytes",
	rmAllocsObjects:   "/gc/heap/allocs:objects",
	rmFreesObjects:    "/gc/heap/frees:objects",
	rmTinyAllocs:      "/gc/heap/tiny/allocs:objects",
	rmHeapObjects:     "/gc/heap/objects:objects",
	rmHeapGoal:        "/gc/heap/goal:bytes",
	rmTotal:           "/memory/classes/total:bytes",
	rmHeapObjectBytes: "/memory/classes/heap/objects:bytes",
	rmHeapUnused:      "/memory/classes/heap/unused:bytes",
	rmHeapReleased:    "/memory/classes/heap/released:bytes",
	rmHeapFree:        "/memory/classes/heap/free:bytes",
	rmHeapStacks:      "/memory/classes/heap/stacks:bytes",
	rmOSStacks:        "/memory/classes/os-stacks:bytes",
	rmMSpanInuse:      "/memory/classes/metadata/mspan/inuse:bytes",
	rmMSpanFree:       "/memory/classes/metadata/mspan/free:bytes",
	rmMCacheInuse:     "/memory/classes/metadata/mcache/inuse:bytes",
	rmMCacheFree:      "/memory/classes/metadata/mcache/free:bytes",
	rmProfBuckets:     "/memory/classes/profiling/buckets:bytes",
	rmMetadataOther:   "/memory/classes/metadata/other:bytes",
	rmOther:           "/memory/classes/other:bytes",
}

const (
	rmGOGC = iota
	rmGOMemLimit
	rmGOMAXPROCS
	rmAllocsBytes
	rmAllocsObjects
	rmFreesObjects
	rmTinyAllocs
	rmHeapObjects
	rmHeapGoal
	rmTotal
	rmHeapObjectBytes
	rmHeapUnused
	rmHeapReleased
	rmHeapFree
	rmHeapStacks
	rmOSStacks
	rmMSpanInuse
	rmMSpanFree
	rmMCacheInuse
	rmMCacheFree
	rmProfBuckets
	rmMetadataOther
	rmOther
)

// AppendText implements TextAppender.
func (g *goRuntime) AppendText(b []byte) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	metrics.Read(g.samples)
	// The pause history is copied into g.gc's slices, which ReadGCStats
	// reuses once they are large enough.
	debug.ReadGCStats(&g.gc)
	v := func(i int) uint64 {
		if g.samples[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this Go version: client_golang reads 0 too
		}
		return g.samples[i].Value.Uint64()
	}

	b = AppendHelpType(b, "go_gc_duration_seconds", "Quantiles of the last stop-the-world pauses of the garbage collector, in seconds.", "summary")
	for i, q := range [...]string{"0", "0.25", "0.5", "0.75", "1"} {
		b = append(b, `go_gc_duration_seconds{quantile="`...)
		b = append(b, q...)
		b = append(b, `"} `...)
		b = AppendFloat(b, g.gc.PauseQuantiles[i].Seconds())
		b = append(b, '\n')
	}
	b = appendUnlabelled(b, "go_gc_duration_seconds_sum", g.gc.PauseTotal.Seconds())
	b = appendUnlabelledUint(b, "go_gc_duration_seconds_count", uint64(g.gc.NumGC))

	// GOGC=off reads as the largest uint64, as it does through client_golang.
	b = appendGaugeUint(b, "go_gc_gogc_percent", "The garbage collector's GOGC.", v(rmGOGC))
	b = appendGaugeUint(b, "go_gc_gomemlimit_bytes", "The Go runtime's memory limit (GOMEMLIMIT), in bytes.", v(rmGOMemLimit))
	b = appendGauge(b, "go_goroutines", "Goroutines that exist now.", float64(runtime.NumGoroutine()))
	b = AppendHelpType(b, "go_info", "The Go version the program was built with.", "gauge")
	b = append(b, `go_info{version="`...)
	b = appendEscaped(b, runtime.Version(), true)
	b = append(b, "\"} 1\n"...)

	allocated := v(rmHeapObjectBytes)
	heapInuse := allocated + v(rmHeapUnused)
	heapIdle := v(rmHeapReleased) + v(rmHeapFree)
	tiny := v(rmTinyAllocs)
	b = appendGaugeUint(b, "go_memstats_alloc_bytes", "Bytes of allocated heap objects (MemStats.Alloc).", allocated)
	b = appendCounterUint(b, "go_memstats_alloc_bytes_total", "Bytes allocated on the heap since the process started (MemStats.TotalAlloc).", v(rmAllocsBytes))
	b = appendGaugeUint(b, "go_memstats_buck_hash_sys_bytes", "Bytes of profiling bucket hash tables (MemStats.BuckHashSys).", v(rmProfBuckets))
	b = appendCounterUint(b, "go_memstats_frees_total", "Heap objects freed since the process started (MemStats.Frees).", v(rmFreesObjects)+tiny)
	b = appendGaugeUint(b, "go_memstats_gc_sys_bytes", "Bytes of garbage collection metadata (MemStats.GCSys).", v(rmMetadataOther))
	b = appendGaugeUint(b, "go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects (MemStats.HeapAlloc).", allocated)
	b = appendGaugeUint(b, "go_memstats_heap_idle_bytes", "Bytes in idle heap spans (MemStats.HeapIdle).", heapIdle)
	b = appendGaugeUint(b, "go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans (MemStats.HeapInuse).", heapInuse)
	b = appendGaugeUint(b, "go_memstats_heap_objects", "Allocated heap objects (MemStats.HeapObjects).", v(rmHeapObjects))
	b = appendGaugeUint(b, "go_memstats_heap_released_bytes", "Bytes of heap returned to the operating system (MemStats.HeapReleased).", v(rmHeapReleased))
	b = appendGaugeUint(b, "go_memstats_heap_sys_bytes", "Bytes of heap obtained from the operating system (MemStats.HeapSys).", heapInuse+heapIdle)
	b = appendGauge(b, "go_memstats_last_gc_time_seconds", "When the last garbage collection ended, as a Unix time.", float64(g.gc.LastGC.UnixNano())/1e9)
	b = appendCounterUint(b, "go_memstats_mallocs_total", "Heap objects allocated since the process started (MemStats.Mallocs).", v(rmAllocsObjects)+tiny)
	b = appendGaugeUint(b, "go_memstats_mcache_inuse_bytes", "Bytes of mcache structures in use (MemStats.MCacheInuse).", v(rmMCacheInuse))
	b = appendGaugeUint(b, "go_memstats_mcache_sys_bytes", "Bytes of mcache structures obtained from the operating system (MemStats.MCacheSys).", v(rmMCacheInuse)+v(rmMCacheFree))
	b = appendGaugeUint(b, "go_memstats_mspan_inuse_bytes", "Bytes of mspan structures in use (MemStats.MSpanInuse).", v(rmMSpanInuse))
	b = appendGaugeUint(b, "go_memstats_mspan_sys_bytes", "Bytes of mspan structures obtained from the operating system (MemStats.MSpanSys).", v(rmMSpanInuse)+v(rmMSpanFree))
	b = appendGaugeUint(b, "go_memstats_next_gc_bytes", "Heap size the next garbage collection aims at (MemStats.NextGC).", v(rmHeapGoal))
	b = appendGaugeUint(b, "go_memstats_other_sys_bytes", "Bytes of other runtime allocations (MemStats.OtherSys).", v(rmOther))
	b = appendGaugeUint(b, "go_memstats_stack_inuse_bytes", "Bytes in stack spans (MemStats.StackInuse).", v(rmHeapStacks))
	b = appendGaugeUint(b, "go_memstats_stack_sys_bytes", "Bytes of stack memory obtained from the operating system (MemStats.StackSys).", v(rmHeapStacks)+v(rmOSStacks))
	b = appendGaugeUint(b, "go_memstats_sys_bytes", "Bytes obtained from the operating system in all (MemStats.Sys).", v(rmTotal))
	b = appendGaugeUint(b, "go_sched_gomaxprocs_threads", "The Go runtime's GOMAXPROCS: threads that may run Go code at once.", v(rmGOMAXPROCS))
	threads, _ := runtime.ThreadCreateProfile(nil)
	return appendGauge(b, "go_threads", "Operating system threads the Go runtime created.", float64(threads))
}

// AppendSteadyText implements TextAppender: every go_* series can change
// between scrapes.
func (g *goRuntime) AppendSteadyText(b []byte) ([]byte, uint64) { return b, 0 }

// SteadyVersion implements TextAppender.
func (g *goRuntime) SteadyVersion() uint64 { return 0 }

// appendGauge writes a family of one unlabelled gauge sample.
func appendGauge(b []byte, name, help string, v float64) []byte {
	b = AppendHelpType(b, name, help, "gauge")
	return appendUnlabelled(b, name, v)
}

// appendGaugeUint is appendGauge for a whole number, written exactly.
func appendGaugeUint(b []byte, name, help string, v uint64) []byte {
	b = AppendHelpType(b, name, help, "gauge")
	return appendUnlabelledUint(b, name, v)
}

// appendCounterUint is appendGaugeUint for a counter.
func appendCounterUint(b []byte, name, help string, v uint64) []byte {
	b = AppendHelpType(b, name, help, "counter")
	return appendUnlabelledUint(b, name, v)
}

func appendUnlabelled(b []byte, name string, v float64) []byte {
	b = append(b, name...)
	b = append(b, ' ')
	b = AppendFloat(b, v)
	return append(b, '\n')
}

func appendUnlabelledUint(b []byte, name string, v uint64) []byte {
	b = append(b, name...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}
