package exporters

import (
	"bytes"
	"compress/gzip"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sizes := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {3, 7}, {1000, 1}, {1, 100_000}, {65_536, 65_537}} {
		a, b := make([]byte, sizes[0]), make([]byte, sizes[1])
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32.ChecksumIEEE(append(append([]byte{}, a...), b...))
		got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b)))
		require.Equal(t, want, got, "%v", sizes)
	}
}

// steadyAppender's steady family is whatever lines holds, at version: the
// test changes one without the other to see what the handler keeps.
type steadyAppender struct {
	mu      sync.Mutex
	lines   int
	version uint64
}

func (a *steadyAppender) AppendText(b []byte) []byte {
	b = AppendHelpType(b, "cascade_test_renew", "Changes every scrape.", "gauge")
	for i := range 3000 {
		b = AppendSample(b, "cascade_test_renew", "node", "node-"+strconv.Itoa(i), rand.Float64())
	}
	return b
}

func (a *steadyAppender) AppendSteadyText(b []byte) ([]byte, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b = AppendHelpType(b, "cascade_test_duration", "Changes rarely.", "gauge")
	for i := range a.lines {
		b = AppendSample(b, "cascade_test_duration", "node", "node-"+strconv.Itoa(i), 40)
	}
	return b, a.version
}

func (a *steadyAppender) SteadyVersion() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.version
}

func (a *steadyAppender) set(lines int, version uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines, a.version = lines, version
}

// scrapeBoth returns the plain body and the gzip body, checked to be one
// gzip member that decompresses to a body of the same families.
func scrapeBoth(t *testing.T, h http.Handler) (plain, compressed []byte) {
	t.Helper()
	w, plain := serve(t, h, false)
	require.Equal(t, strconv.Itoa(len(plain)), w.Header().Get("Content-Length"))

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
	compressed = rec.Body.Bytes()
	require.Equal(t, strconv.Itoa(len(compressed)), rec.Header().Get("Content-Length"))
	in := bytes.NewReader(compressed)
	zr, err := gzip.NewReader(in)
	require.NoError(t, err)
	zr.Multistream(false)
	text, err := io.ReadAll(zr) // checks the CRC-32 and length in the trailer
	require.NoError(t, err)
	require.Zero(t, in.Len(), "bytes after the gzip member")
	require.Equal(t, samplesOf(t, plain, "cascade_test_duration"), samplesOf(t, text, "cascade_test_duration"))
	return plain, compressed
}

func samplesOf(t *testing.T, body []byte, family string) int {
	t.Helper()
	n := 0
	for line := range bytes.Lines(body) {
		if bytes.HasPrefix(line, []byte(family+"{")) {
			n++
		}
	}
	return n
}

// TestSteadyTextIsKeptUntilItsVersionChanges: the steady families are
// written once per version, served alike plain and compressed, and written
// again as soon as the version moves.
func TestSteadyTextIsKeptUntilItsVersionChanges(t *testing.T) {
	a := &steadyAppender{}
	a.set(2000, 1)
	h := Handler(prometheus.NewRegistry(), []TextAppender{a}, HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler))

	plain, _ := scrapeBoth(t, h)
	require.Equal(t, 2000, samplesOf(t, plain, "cascade_test_duration"))

	a.mu.Lock()
	a.lines = 10 // changed behind the version's back: the kept text is served
	a.mu.Unlock()
	plain, _ = scrapeBoth(t, h)
	require.Equal(t, 2000, samplesOf(t, plain, "cascade_test_duration"))

	a.set(10, 2)
	plain, _ = scrapeBoth(t, h)
	require.Equal(t, 10, samplesOf(t, plain, "cascade_test_duration"))
	require.Equal(t, 3000, samplesOf(t, plain, "cascade_test_renew"))

	a.set(0, 3) // no steady lines at all
	plain, _ = scrapeBoth(t, h)
	require.Zero(t, samplesOf(t, plain, "cascade_test_duration"))
}

// TestGzipCommandReadsTheBody: a decoder other than Go's, the gzip command,
// takes the joined member as one stream and checks its trailer.
func TestGzipCommandReadsTheBody(t *testing.T) {
	gzipCmd, err := exec.LookPath("gzip")
	require.NoError(t, err, "gzip is in every Debian system (the gzip package is essential)")
	a := &steadyAppender{}
	a.set(5000, 1)
	h := Handler(prometheus.NewRegistry(), []TextAppender{a}, HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler))
	_, compressed := scrapeBoth(t, h)

	cmd := exec.Command(gzipCmd, "--decompress", "--stdout")
	cmd.Stdin = bytes.NewReader(compressed)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	text, err := cmd.Output()
	require.NoError(t, err, "gzip: %s", stderr.String())
	require.Empty(t, stderr.String(), "gzip warns, for example of trailing garbage")
	require.Equal(t, 5000, samplesOf(t, text, "cascade_test_duration"))
	require.Equal(t, 3000, samplesOf(t, text, "cascade_test_renew"))
}
