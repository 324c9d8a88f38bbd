package loki

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Component = "test"
	cfg.BatchWait = 100 * time.Millisecond
	cfg.BatchSize = 16 << 10
	cfg.MinBackoff = 50 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	cfg.MaxRetries = 3
	cfg.Timeout = 2 * time.Second
	return cfg
}

func logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// arrived returns the messages stored for a stream selector, sorted.
func arrived(t *testing.T, vl *testenv.VictoriaLogs, selector string) []string {
	t.Helper()
	res, err := vl.Query(t.Context(), selector)
	require.NoError(t, err)
	msgs := make([]string, 0, len(res))
	for _, r := range res {
		msgs = append(msgs, r["_msg"])
	}
	sort.Strings(msgs)
	return msgs
}

// waitArrived polls until at least n messages of selector are stored.
func waitArrived(t *testing.T, vl *testenv.VictoriaLogs, selector string, n int) []string {
	t.Helper()
	var msgs []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs = arrived(t, vl, selector)
		if len(msgs) >= n || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestEveryEntryArrives(t *testing.T) {
	vl := testenv.VictoriaLogsForTest(t)
	c, err := New(testConfig(vl.LokiPushURL()), logger())
	require.NoError(t, err)

	var want []string
	streams := []model.LabelSet{
		{"cluster": "lab", "route": "/api/v1/nodes/{name}/status", "code_class": "2xx"},
		{"cluster": "lab", "route": "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}", "code_class": "5xx"},
	}
	start := time.Now()
	for i := range 2000 {
		line := fmt.Sprintf(`{"i":%d,"uri":"/api/v1/nodes/node-%d/status","note":"ünïcödé \"quoted\""}`, i, i)
		require.True(t, c.Send(streams[i%2], start.Add(time.Duration(i)*time.Millisecond), line))
		want = append(want, line)
	}
	require.NoError(t, c.Close(t.Context()))
	sort.Strings(want)
	got := waitArrived(t, vl, `{cluster="lab"}`, len(want))
	require.Equal(t, want, got, "every entry arrives exactly once")
	require.Len(t, arrived(t, vl, `{cluster="lab",code_class="5xx"}`), 1000, "stream labels arrive")

	s := c.Stats()
	require.Equal(t, Stats{Enqueued: 2000, Handed: 2000, Sent: 2000}, s)
	require.False(t, c.Send(streams[0], time.Now(), "after close"))
	require.Equal(t, uint64(1), c.Stats().DroppedClosed)
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestStoreDown stops the store by its pid: Send never blocks, what does not
// fit the queue is dropped and counted, batches the sender gives up are
// counted, and once the store is back new entries arrive.
func TestStoreDown(t *testing.T) {
	vl := testenv.VictoriaLogsForTest(t)
	cfg := testConfig(vl.LokiPushURL())
	cfg.QueueCapacity = 50
	c, err := New(cfg, logger())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	ls := model.LabelSet{"cluster": "down"}

	require.True(t, c.Send(ls, time.Now(), "before"))
	waitArrived(t, vl, `{cluster="down"}`, 1)
	vl.Stop()

	var slowest time.Duration
	for i := range 3000 {
		begin := time.Now()
		c.Send(ls, time.Now(), fmt.Sprintf("while down %d", i))
		slowest = max(slowest, time.Since(begin))
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond) // spread over the sender's retries
		}
	}
	require.Less(t, slowest, 50*time.Millisecond, "Send must not wait for the store")
	s := c.Stats()
	require.Positive(t, s.DroppedQueueFull, "a full queue drops")
	require.Equal(t, uint64(3001), s.Enqueued+s.DroppedQueueFull)
	require.Eventually(t, func() bool { return c.Stats().SendFailed > 0 }, 30*time.Second, 50*time.Millisecond,
		"the sender gives batches up after its retries, and that is counted")

	require.NoError(t, vl.Start())
	// Let the backlog drain, then everything new arrives.
	require.Eventually(t, func() bool { s := c.Stats(); return s.Queued == 0 && s.Handed == s.Enqueued }, 30*time.Second, 50*time.Millisecond)
	var later []string
	for i := range 100 {
		line := fmt.Sprintf("after %03d", i)
		require.Eventually(t, func() bool { return c.Stats().Queued < cfg.QueueCapacity }, 10*time.Second, time.Millisecond)
		require.True(t, c.Send(ls, time.Now(), line))
		later = append(later, line)
	}
	got := waitArrived(t, vl, `{cluster="down"} "after"`, len(later))
	require.Equal(t, later, got)

	// Nothing vanishes uncounted: each entry was queued or dropped, and each
	// queued one was pushed, given up or is still in a batch.
	s = c.Stats()
	require.Equal(t, uint64(3101), s.Enqueued+s.DroppedQueueFull)
	require.LessOrEqual(t, s.Sent+s.SendFailed, s.Handed)
	m := scrapeClient(t, c)
	require.Equal(t, float64(s.DroppedQueueFull), m[`cascade_loki_entries_dropped_total{component="test",reason="queue_full"}`])
	require.Equal(t, 50.0, m[`cascade_loki_queue_capacity{component="test"}`])
}

// TestCloseGivesUp bounds Close by its context while the store is down.
func TestCloseGivesUp(t *testing.T) {
	vl := testenv.VictoriaLogsForTest(t)
	cfg := testConfig(vl.LokiPushURL())
	cfg.MaxRetries = 100
	cfg.QueueCapacity = 1000
	// Small batches: the sender fills one, then retries it, and the rest
	// waits in the queue.
	cfg.BatchSize = 100
	log, logs := logtest.New()
	c, err := New(cfg, log)
	require.NoError(t, err)
	vl.Stop()
	for i := range 500 {
		c.Send(model.LabelSet{"cluster": "gone"}, time.Now(), fmt.Sprintf("entry-%03d", i))
	}
	require.Eventually(t, func() bool { return logs.Count("cannot push to Loki; retrying") > 0 }, 30*time.Second, 10*time.Millisecond,
		"the sender never retried a batch")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	require.ErrorIs(t, c.Close(ctx), context.DeadlineExceeded)
	require.Less(t, time.Since(begin), 2*time.Second)
	s := c.Stats()
	require.Positive(t, s.DroppedShutdown)
	require.Equal(t, uint64(500), s.Enqueued)
	require.LessOrEqual(t, s.Handed, uint64(500))
	// Close stopped the push it gave up on: every entry is settled, each
	// counted once, as sent or dropped (the batch being retried, and what
	// was still queued, as shutdown).
	require.Equal(t, uint64(500), s.Sent+s.SendFailed+s.DroppedShutdown, "%+v", s)
	require.Zero(t, s.Sent)
}

func TestInvalidLabels(t *testing.T) {
	c, err := New(testConfig("http://127.0.0.1:1/push"), logger())
	require.NoError(t, err)
	defer c.Close(t.Context())
	for _, ls := range []model.LabelSet{
		nil,
		{},
		{"__name__": "x"},
		{"bad-name": "x"},
		{"ok": ""},
		{"ok": "\xff"},
	} {
		require.False(t, c.Send(ls, time.Now(), "x"), "%v", ls)
	}
	require.Equal(t, uint64(6), c.Stats().DroppedInvalid)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		err    string
	}{
		{func(c *Config) { c.URL = "" }, "URL must not be empty"},
		{func(c *Config) { c.URL = "ftp://x/push" }, `"ftp://x/push"`},
		{func(c *Config) { c.URL = "http:///push" }, "want http(s)://host"},
		{func(c *Config) { c.Component = "" }, "component"},
		{func(c *Config) { c.QueueCapacity = 0 }, "queue capacity 0"},
		{func(c *Config) { c.BatchSize = -1 }, "batch size -1"},
		{func(c *Config) { c.BatchWait = 0 }, "batch wait 0s"},
		{func(c *Config) { c.MaxRetries = 0 }, "max retries 0"},
		{func(c *Config) { c.MaxBackoff = time.Millisecond }, "backoff"},
		{func(c *Config) { c.Timeout = 0 }, "timeout 0s"},
	} {
		cfg := testConfig("http://127.0.0.1:3100/loki/api/v1/push")
		require.NoError(t, cfg.Validate())
		tc.mutate(&cfg)
		require.ErrorContains(t, cfg.Validate(), tc.err)
	}
}

func scrapeClient(t *testing.T, c *Client) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			key := mf.GetName() + "{" + strings.Join(parts, ",") + "}"
			if m.Counter != nil {
				out[key] = m.GetCounter().GetValue()
			} else {
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
