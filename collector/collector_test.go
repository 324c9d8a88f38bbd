package collector

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestScrapeStoreAndRemoteWrite scrapes a target into the TSDB, remote-writes
// it to Debian's Prometheus, and finds the data again after a reopen.
func TestScrapeStoreAndRemoteWrite(t *testing.T) {
	prom := testenv.PrometheusForTest(t, "global: {scrape_interval: 1m}\n")

	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cascade_test_gauge", Help: "A gauge."})
	reg.MustRegister(g)
	g.Set(42)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer target.Close()

	cfg, err := config.Load(fmt.Sprintf(`
global:
  scrape_interval: 1s
  external_labels: {cluster: test}
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s}
`, target.Listener.Addr().String(), prom.URL), slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	dir := t.TempDir()
	c, err := Open(Options{DataDir: dir, Retention: DefaultRetention})
	require.NoError(t, err)
	require.NoError(t, c.ApplyConfig(cfg))
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()

	require.Eventually(t, func() bool { return countSamples(t, c, "cascade_test_gauge") >= 2 },
		30*time.Second, 200*time.Millisecond, "the TSDB never got the scraped samples")
	require.Eventually(t, func() bool {
		got, err := prom.Query(t.Context(), `cascade_test_gauge{job="exporter",cluster="test"}`)
		return err == nil && len(got) == 1 && got[0].Value[1] == "42"
	}, 30*time.Second, 250*time.Millisecond, "remote write never reached Prometheus")

	stop()
	<-done
	require.NoError(t, c.Close())

	// Persistent: the samples are there after a reopen.
	c, err = Open(Options{DataDir: dir, Retention: DefaultRetention})
	require.NoError(t, err)
	defer c.Close()
	require.GreaterOrEqual(t, countSamples(t, c, "cascade_test_gauge"), 2)
}

func TestOptionsValidate(t *testing.T) {
	require.ErrorContains(t, Options{}.Validate(), "data directory")
	require.ErrorContains(t, Options{DataDir: "x", Retention: time.Minute}.Validate(), "shorter than an hour")
	require.NoError(t, Options{DataDir: "x", Retention: DefaultRetention}.Validate())
}

func countSamples(t *testing.T, c *Collector, name string) int {
	t.Helper()
	q, err := c.Storage().Querier(0, time.Now().Add(time.Minute).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	n := 0
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			n++
		}
	}
	require.NoError(t, set.Err())
	return n
}

// TestRunFailsWhenTheDataDirectoryFails: a data directory removed, or
// replaced by another, under a running collector stops Run with an error
// naming it, instead of scraping on into files that are gone.
func TestRunFailsWhenTheDataDirectoryFails(t *testing.T) {
	for name, break_ := range map[string]func(dir string) error{
		"removed": os.RemoveAll,
		"replaced": func(dir string) error {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			return os.Mkdir(dir, 0o755)
		},
		"a file": func(dir string) error {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			return os.WriteFile(dir, nil, 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			c, err := Open(Options{DataDir: dir, Retention: DefaultRetention, StorageCheckInterval: 50 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			cfg, err := config.Load("", slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			require.NoError(t, c.ApplyConfig(cfg))
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()

			// Healthy, it runs on through several checks.
			select {
			case err := <-done:
				t.Fatalf("Run ended on a healthy directory: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			require.NoError(t, break_(dir))
			select {
			case err := <-done:
				require.ErrorContains(t, err, "collector: the data directory "+dir+" fails")
			case <-time.After(10 * time.Second):
				t.Fatal("Run went on with its data directory " + name)
			}
		})
	}
}

// TestScrapeFailureLogFile: global.scrape_failure_log_file is acted on, as
// in Prometheus: a failed scrape is written there.
func TestScrapeFailureLogFile(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())
	logPath := filepath.Join(dir, "scrape-failures.jsonl")
	cfg, err := config.Load(fmt.Sprintf(`
global:
  scrape_interval: 100ms
  scrape_timeout: 100ms
  scrape_failure_log_file: %s
scrape_configs:
  - job_name: dead
    static_configs: [{targets: [%q]}]
`, logPath, dead), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	c, err := Open(Options{DataDir: filepath.Join(dir, "data"), Retention: DefaultRetention})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.ApplyConfig(cfg))
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), dead)
	}, 30*time.Second, 100*time.Millisecond, "no scrape failure was logged to the file")
	stop()
	require.NoError(t, <-done)
}

// TestRemoteWriteDeliversAtOnce: a scraped sample reaches the remote-write
// receiver within the queue's batch deadline, not at the WAL watcher's
// 15-second fallback read.
func TestRemoteWriteDeliversAtOnce(t *testing.T) {
	prom := testenv.PrometheusForTest(t, "global: {scrape_interval: 1m}\n")
	var mu sync.Mutex
	scrapedAt := map[int]time.Time{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n := len(scrapedAt) + 1
		scrapedAt[n] = time.Now()
		mu.Unlock()
		fmt.Fprintf(w, "cascade_test_scrapes %d\n", n)
	}))
	defer target.Close()
	cfg, err := config.Load(fmt.Sprintf(`
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: exporter
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 100ms}
`, target.Listener.Addr().String(), prom.URL), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	c, err := Open(Options{DataDir: t.TempDir(), Retention: DefaultRetention})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.ApplyConfig(cfg))
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { stop(); <-done }()

	// Each time a newer scrape shows in the receiver: how long after it
	// was taken.
	var delays []time.Duration
	last := 0
	require.Eventually(t, func() bool {
		got, err := prom.Query(t.Context(), `cascade_test_scrapes`)
		if err != nil || len(got) != 1 {
			return false
		}
		n, err := strconv.Atoi(fmt.Sprint(got[0].Value[1]))
		require.NoError(t, err)
		if n > last {
			mu.Lock()
			at := scrapedAt[n]
			mu.Unlock()
			if last > 0 {
				delays = append(delays, time.Since(at))
			}
			last = n
		}
		return len(delays) >= 8
	}, time.Minute, 50*time.Millisecond, "remote write delivered %d scrapes", len(delays))
	slices.Sort(delays)
	t.Logf("scrape to receiver: median %s, max %s", delays[len(delays)/2], delays[len(delays)-1])
	require.Less(t, delays[len(delays)-1], 3*time.Second, "delays %v", delays)
}
