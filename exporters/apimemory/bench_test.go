package apimemory

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// bigExposition is the capture with its other families copied under new
// names until it is as large as a busy API server's: megabytes.
func bigExposition(b *testing.B) []byte {
	capture, err := os.ReadFile("testdata/apiserver-metrics.txt")
	require.NoError(b, err)
	others := capture[:bytes.Index(capture, []byte("# HELP process_"))]
	var out bytes.Buffer
	for i := range 200 {
		for line := range bytes.Lines(others) {
			if rest, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok {
				fmt.Fprintf(&out, "# HELP copy%d_%s", i, rest)
			} else if rest, ok := bytes.CutPrefix(line, []byte("# TYPE ")); ok {
				fmt.Fprintf(&out, "# TYPE copy%d_%s", i, rest)
			} else {
				fmt.Fprintf(&out, "copy%d_%s", i, line)
			}
		}
	}
	out.Write(capture)
	return out.Bytes()
}

func BenchmarkParseProcessMetrics(b *testing.B) {
	body := bigExposition(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseProcessMetrics(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseWholeExposition is what parsing all of it would cost.
func BenchmarkParseWholeExposition(b *testing.B) {
	body := bigExposition(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseText(body); err != nil {
			b.Fatal(err)
		}
	}
}
