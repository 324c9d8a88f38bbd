package linedeflate

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/klauspost/compress/flate"

	"github.com/cascade-sre/cascade/internal/coldcache"
)

// BenchmarkCompress compresses the renew times of 1,000 and 5,000 nodes
// here and with klauspost's flate at its fastest level (the compressor the
// exporters used before), hot and with the caches emptied before each run,
// as they are between two scrapes seconds apart. It reports the compressed
// size.
func BenchmarkCompress(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		src := renewLines(n, rand.New(rand.NewPCG(1, 2)))
		for _, cold := range []bool{false, true} {
			suffix := "/" + strconv.Itoa(n)
			if cold {
				suffix += "/cold"
			}
			b.Run("linedeflate"+suffix, func(b *testing.B) {
				var e Encoder
				var out []byte
				b.SetBytes(int64(len(src)))
				for b.Loop() {
					if cold {
						coldcache.EvictUntimed(b)
					}
					out = e.Append(out[:0], src)
				}
				b.ReportMetric(float64(len(out)), "bytes")
			})
			b.Run("klauspost"+suffix, func(b *testing.B) {
				var out bytes.Buffer
				fw, _ := flate.NewWriter(&out, flate.BestSpeed)
				b.SetBytes(int64(len(src)))
				for b.Loop() {
					if cold {
						coldcache.EvictUntimed(b)
					}
					out.Reset()
					fw.Reset(&out)
					_, _ = fw.Write(src)
					_ = fw.Flush()
				}
				b.ReportMetric(float64(out.Len()), "bytes")
			})
		}
	}
}
