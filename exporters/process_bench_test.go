package exporters

import (
	"testing"

	"github.com/cascade-sre/cascade/internal/coldcache"
)

// BenchmarkProcessMetrics writes the process_* series, hot and with the
// caches emptied before each scrape.
func BenchmarkProcessMetrics(b *testing.B) {
	for _, cold := range []bool{false, true} {
		name := "hot"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			p := NewProcessMetrics()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				if cold {
					coldcache.EvictUntimed(b)
				}
				buf = p.AppendText(buf[:0])
			}
		})
	}
}
