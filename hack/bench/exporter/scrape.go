package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"iter"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

// prometheusAccept is the Accept header Prometheus 3 sends by default, so each
// target negotiates the format it would give a real Prometheus.
const prometheusAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4," +
	"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

// scraper fetches one target's /metrics the way Prometheus does.
type scraper struct {
	url    string
	client *http.Client
}

func newScraper(url string) *scraper {
	return &scraper{url: url, client: &http.Client{
		Timeout: 10 * time.Second,
		// The bench asks for gzip itself, as Prometheus does; the transport
		// must not also decompress behind its back, so the timed part is the
		// compressed body as it comes off the wire. Prometheus keeps its
		// connection to a target alive, and so does this client.
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1},
	}}
}

type scrapeResult struct {
	latency   time.Duration // request start until the whole body is read
	wireBytes int           // body as sent (gzip)
	body      []byte        // decompressed exposition text
}

func (s *scraper) scrape(ctx context.Context) (scrapeResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return scrapeResult{}, err
	}
	req.Header.Set("Accept", prometheusAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "Prometheus/3.5.0")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "10")

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return scrapeResult{}, err
	}
	raw, err := io.ReadAll(resp.Body)
	latency := time.Since(start)
	resp.Body.Close()
	if err != nil {
		return scrapeResult{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return scrapeResult{}, fmt.Errorf("%s: %s", s.url, resp.Status)
	}

	// Decompressing is the bench's work, not the target's: outside the timing.
	body := raw
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return scrapeResult{}, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return scrapeResult{}, err
		}
	}
	return scrapeResult{latency: latency, wireBytes: len(raw), body: body}, nil
}

// sample is one line of exposition text: name{labels} value.
type sample struct {
	name   string
	labels string // what is between the braces, unparsed
	value  float64
}

// samples yields the samples of Prometheus text or OpenMetrics exposition.
// It is just enough of a parser for counting series and reading a few
// values: label values holding '}' or spaces are not expected here.
func samples(body []byte) iter.Seq[sample] {
	return func(yield func(sample) bool) {
		for line := range strings.Lines(string(body)) {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			var s sample
			rest := line
			if i := strings.IndexByte(line, '{'); i >= 0 {
				j := strings.LastIndexByte(line, '}')
				if j < i {
					continue
				}
				s.name, s.labels, rest = line[:i], line[i+1:j], strings.TrimSpace(line[j+1:])
			} else {
				s.name, rest, _ = strings.Cut(line, " ")
			}
			value, _, _ := strings.Cut(rest, " ") // an optional timestamp follows
			s.value, _ = strconv.ParseFloat(value, 64)
			if !yield(s) {
				return
			}
		}
	}
}

func countSeries(body []byte) int {
	n := 0
	for range samples(body) {
		n++
	}
	return n
}

// window is what one measurement window saw of one target.
type window struct {
	wall       time.Duration
	latencies  []time.Duration // successful scrapes only
	errors     int
	seriesMin  int
	seriesMax  int
	wireBytes  int // of the last scrape
	textBytes  int // of the last scrape, decompressed
	rssPeak    uint64
	rssLast    uint64
	hwm        uint64
	anonPeak   uint64
	fileLast   uint64
	cpuPercent float64 // of one core

	// What a Go target says of itself, from its own series: the time the
	// exporter spent in Update per scrape, and its Go runtime figures at the
	// last scrape. They tell where latency and memory go without a profiler.
	updateSeconds []float64
	goRuntime     map[string]float64
}

// goRuntimeSeries are the Go collector's series kept in window.goRuntime.
var goRuntimeSeries = []string{
	"go_memstats_heap_inuse_bytes", "go_memstats_heap_objects", "go_memstats_stack_inuse_bytes",
	"go_memstats_sys_bytes", "go_goroutines", "go_gc_gogc_percent",
}

// observe records one scrape, or its failure, and the memory after it.
func (w *window) observe(r scrapeResult, err error, m procstat.Mem) {
	if err != nil {
		w.errors++
	} else {
		w.latencies = append(w.latencies, r.latency)
		n := countSeries(r.body)
		w.seriesMin, w.seriesMax = min(w.seriesMin, n), max(w.seriesMax, n)
		w.wireBytes, w.textBytes = r.wireBytes, len(r.body)
		w.observeSelf(r.body)
	}
	w.rssPeak, w.rssLast, w.hwm = max(w.rssPeak, m.RSS), m.RSS, m.HWM
	w.anonPeak, w.fileLast = max(w.anonPeak, m.Anon), m.File
}

// observeSelf records what the target reports about itself.
func (w *window) observeSelf(body []byte) {
	w.goRuntime = make(map[string]float64)
	for s := range samples(body) {
		switch {
		case s.name == "cascade_exporter_scrape_duration_seconds" && s.labels == `exporter="nodelease"`:
			w.updateSeconds = append(w.updateSeconds, s.value)
		case slices.Contains(goRuntimeSeries, s.name):
			w.goRuntime[s.name] = s.value
		}
	}
}

// percentile is the nearest-rank percentile (p in 0..1) of the latencies.
func (w window) percentile(p float64) time.Duration {
	sorted := slices.Sorted(slices.Values(w.latencies))
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func (w window) summary() string {
	series := strconv.Itoa(w.seriesMax)
	if w.seriesMin != w.seriesMax {
		series = fmt.Sprintf("%d..%d", w.seriesMin, w.seriesMax)
	}
	return fmt.Sprintf("%d scrapes (%d failed), p50 %.2f ms, p99 %.2f ms, max %.2f ms, %s series, %d KiB text / %d KiB gzip, RSS peak %.1f MiB, CPU %.1f%%",
		len(w.latencies), w.errors, ms(w.percentile(0.5)), ms(w.percentile(0.99)), ms(w.percentile(1)),
		series, w.textBytes/1024, w.wireBytes/1024, mib(w.rssPeak), w.cpuPercent)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b uint64) float64       { return float64(b) / (1 << 20) }
