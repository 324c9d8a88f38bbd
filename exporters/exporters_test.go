package exporters

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

var testDesc = prometheus.NewDesc("cascade_test_value", "A test value.", nil, nil)

type fakeExporter struct {
	err   error
	block chan struct{}
}

func (f fakeExporter) Describe(ch chan<- *prometheus.Desc) { ch <- testDesc }
func (f fakeExporter) Update(ch chan<- prometheus.Metric) error {
	if f.block != nil {
		<-f.block
	}
	ch <- prometheus.MustNewConstMetric(testDesc, prometheus.GaugeValue, 1)
	return f.err
}

// appender writes one family with a label value that needs escaping, and
// one steady family.
type appender struct{}

func (appender) AppendText(b []byte) []byte {
	b = AppendHelpType(b, "cascade_test_per_node", "Per node\\value.", "gauge")
	b = AppendSample(b, "cascade_test_per_node", "node", "a\"b\\c\nd", 1.5)
	b = AppendSample(b, "cascade_test_per_node", "node", "nan", math.NaN())
	return AppendSample(b, "cascade_test_per_node", "node", "inf", math.Inf(1))
}

func (appender) AppendSteadyText(b []byte) ([]byte, uint64) {
	b = AppendHelpType(b, "cascade_test_steady", "Steady.", "gauge")
	b = AppendSample(b, "cascade_test_steady", "node", "a", 40)
	b = AppendEscapedSeries(b, "cascade_test_steady", "node", EscapeLabelValue("b\"c"))
	return append(b, "41\n"...), 1
}

func (appender) SteadyVersion() uint64 { return 1 }

func serve(t *testing.T, h http.Handler, gzipped bool) (*httptest.ResponseRecorder, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gzipped {
		req.Header.Set("Accept-Encoding", "deflate, gzip;q=1.0, *;q=0.5")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body := w.Body.Bytes()
	if w.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		require.NoError(t, err)
		body, err = io.ReadAll(zr)
		require.NoError(t, err)
	}
	return w, body
}

func TestHandlerServesRegistryAndAppenders(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSet(slog.New(slog.DiscardHandler),
		Named{Name: "good", Collector: fakeExporter{}},
	))
	// The Go runtime's and the process's appenders have no steady text.
	h := Handler(reg, []TextAppender{NewGoRuntime(), appender{}, NewProcessMetrics()}, HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler))

	for _, gz := range []bool{false, true} {
		w, body := serve(t, h, gz)
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, gz, w.Header().Get("Content-Encoding") == "gzip")
		require.Equal(t, string(expfmt.NewFormat(expfmt.TypeTextPlain)), w.Header().Get("Content-Type"))

		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		require.NoError(t, err, "%s", body)
		require.Contains(t, mfs, "cascade_test_value")
		require.Contains(t, mfs, "go_goroutines")
		require.Contains(t, mfs, "process_cpu_seconds_total")
		per := mfs["cascade_test_per_node"]
		require.NotNil(t, per)
		require.Equal(t, "Per node\\value.", per.GetHelp())
		require.Equal(t, "a\"b\\c\nd", per.Metric[0].Label[0].GetValue())
		require.Equal(t, 1.5, per.Metric[0].GetGauge().GetValue())
		require.True(t, math.IsNaN(per.Metric[1].GetGauge().GetValue()))
		require.True(t, math.IsInf(per.Metric[2].GetGauge().GetValue(), 1))
		steady := mfs["cascade_test_steady"].Metric
		require.Equal(t, 40.0, steady[0].GetGauge().GetValue())
		require.Equal(t, "b\"c", steady[1].Label[0].GetValue())
		require.Equal(t, 41.0, steady[1].GetGauge().GetValue())

		problems, err := promlint.New(bytes.NewReader(body)).Lint()
		require.NoError(t, err)
		require.Empty(t, problems)
	}
}

// TestEscapeLabelValueCopiesOnlyWhatChanges: a name with nothing to escape,
// any node's, is kept as it is, not copied for every lease.
func TestEscapeLabelValueCopiesOnlyWhatChanges(t *testing.T) {
	name := "ip-10-0-1-2.eu-west-1.compute.internal"
	require.Same(t, unsafe.StringData(name), unsafe.StringData(EscapeLabelValue(name)))
	require.Equal(t, `a\\b\"c\nd`, EscapeLabelValue("a\\b\"c\nd"))
}

// TestSetReportsEachExporter: a failing exporter is reported as such and does
// not hide the others.
func TestSetReportsEachExporter(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSet(slog.New(slog.DiscardHandler),
		Named{Name: "good", Collector: fakeExporter{}},
		Named{Name: "bad", Collector: fakeExporter{err: errors.New("boom")}},
	))
	_, body := serve(t, Handler(reg, nil, HandlerOpts{}, slog.New(slog.DiscardHandler)), false)
	text := string(body)
	require.Contains(t, text, `cascade_exporter_scrape_success{exporter="good"} 1`)
	require.Contains(t, text, `cascade_exporter_scrape_success{exporter="bad"} 0`)
	require.Contains(t, text, `cascade_exporter_scrape_duration_seconds{exporter="bad"}`)
}

func TestHandlerLimitsConcurrentScrapes(t *testing.T) {
	block := make(chan struct{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSet(slog.New(slog.DiscardHandler), Named{Name: "slow", Collector: fakeExporter{block: block}}))
	h := Handler(reg, nil, HandlerOpts{MaxInFlight: 1}, slog.New(slog.DiscardHandler))

	var wg sync.WaitGroup
	first := make(chan int, 1)
	wg.Go(func() {
		w, _ := serve(t, h, false)
		first <- w.Code
	})
	// Wait until the first scrape holds the only slot.
	require.Eventually(t, func() bool { return len(h.(*handler).inFlight) == 1 }, 5*time.Second, time.Millisecond)
	w, _ := serve(t, h, false)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	close(block)
	wg.Wait()
	require.Equal(t, http.StatusOK, <-first)
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                   false,
		"gzip":               true,
		"identity":           false,
		"br, GZIP":           true,
		"gzip;q=0":           false,
		"gzip; q=0, deflate": false,
		"x-gzip":             false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept-Encoding", header)
		require.Equal(t, want, acceptsGzip(r), header)
	}
}

// bigAppender writes about 1 MiB, as the lease exporter does at 5,000 nodes.
type bigAppender struct{ nodes []string }

func newBigAppender() bigAppender {
	a := bigAppender{nodes: make([]string, 10000)}
	for i := range a.nodes {
		a.nodes[i] = "ip-10-0-" + strconv.Itoa(i) + ".eu-west-1.compute.internal"
	}
	return a
}

func (a bigAppender) AppendSteadyText(b []byte) ([]byte, uint64) { return b, 0 }
func (a bigAppender) SteadyVersion() uint64                      { return 0 }

func (a bigAppender) AppendText(b []byte) []byte {
	b = AppendHelpType(b, "cascade_test_per_node", "Per node.", "gauge")
	for i, node := range a.nodes {
		b = AppendSample(b, "cascade_test_per_node", "node", node, 1.7645e9+float64(i)/1e6)
	}
	return b
}

// TestHandlerKeepsItsScratchAcrossGC: the text buffer and the gzip writer of
// a scrape serve the next one even when collections ran in between, as they
// do between two scrapes 15 s apart; a sync.Pool dropped them at the second
// GC, and every scrape allocated them anew (~2 MiB at 5,000 nodes), which
// the GC goal then doubled in the process's memory.
func TestHandlerKeepsItsScratchAcrossGC(t *testing.T) {
	h := Handler(prometheus.NewRegistry(), []TextAppender{newBigAppender()}, HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler))
	serve(t, h, true) // the first scrape allocates
	var before, after runtime.MemStats
	const scrapes = 5
	var allocated uint64
	for range scrapes {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		h.ServeHTTP(discardResponse{header: http.Header{}}, req)
		runtime.ReadMemStats(&after)
		allocated += after.TotalAlloc - before.TotalAlloc
	}
	require.Less(t, allocated/scrapes, uint64(64<<10), "bytes allocated per scrape")
}

// discardResponse is a ResponseWriter that keeps nothing, so that only the
// handler's own allocations are counted.
type discardResponse struct{ header http.Header }

func (d discardResponse) Header() http.Header         { return d.header }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}

// TestAppendSeconds: the decimal is exactly ns/1e9, and a parser reads the
// float64 nearest to it.
func TestAppendSeconds(t *testing.T) {
	for ns, want := range map[int64]string{
		0:                     "0",
		40e9:                  "40",
		1764554526123456000:   "1764554526.123456",
		1764554526000000001:   "1764554526.000000001",
		-1:                    "-0.000000001",
		-1500000000:           "-1.5",
		math.MaxInt64:         "9223372036.854775807",
		math.MinInt64:         "-9223372036.854775808",
		1764554526100000000:   "1764554526.1",
		1764554526999999999:   "1764554526.999999999",
		-1764554526999999999:  "-1764554526.999999999",
		999999999:             "0.999999999",
		1e9:                   "1",
		-1e9:                  "-1",
		12345678900:           "12.3456789",
		1764554526_500000000:  "1764554526.5",
		-1764554526_500000000: "-1764554526.5",
	} {
		got := string(AppendSeconds(nil, ns))
		require.Equal(t, want, got, ns)
		exact, ok := new(big.Rat).SetString(got)
		require.True(t, ok, got)
		require.Zero(t, exact.Cmp(big.NewRat(ns, 1e9)), "%s is not %d ns", got, ns)
		f, err := strconv.ParseFloat(got, 64)
		require.NoError(t, err)
		nearest, _ := big.NewRat(ns, 1e9).Float64()
		require.Equal(t, nearest, f, got)
	}
}

// FuzzAppendSeconds: for any ns, the text is a decimal equal to ns/1e9.
func FuzzAppendSeconds(f *testing.F) {
	for _, ns := range []int64{0, 1, -1, 40e9, 1764554526123456000, math.MinInt64, math.MaxInt64} {
		f.Add(ns)
	}
	f.Fuzz(func(t *testing.T, ns int64) {
		got := string(AppendSeconds(nil, ns))
		exact, ok := new(big.Rat).SetString(got)
		if !ok || exact.Cmp(big.NewRat(ns, 1e9)) != 0 || strings.HasSuffix(got, "0") && strings.Contains(got, ".") {
			t.Fatalf("%d ns written as %q", ns, got)
		}
	})
}
