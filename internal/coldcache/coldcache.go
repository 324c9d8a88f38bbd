// Package coldcache empties the processor's caches for benchmarks that
// measure work as it runs between scrapes seconds apart, after other
// processes have had the caches to themselves.
package coldcache

import "testing"

// evictor is larger than any processor's last-level cache; allocated on
// first use, so that only the benchmarks that want it pay for it.
var evictor []byte

// Evict writes a byte of every cache line of a buffer larger than the
// caches, leaving none of what the caller touched before in them. It is
// meant to run with the benchmark's timer stopped.
func Evict() {
	if evictor == nil {
		evictor = make([]byte, 64<<20)
	}
	for i := 0; i < len(evictor); i += 64 {
		evictor[i]++
	}
}

// EvictUntimed runs Evict with b's timer stopped.
func EvictUntimed(b *testing.B) {
	b.StopTimer()
	Evict()
	b.StartTimer()
}
