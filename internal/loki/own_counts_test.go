package loki

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestSendersToOneHostCountApart: two senders pushing to one store (in
// `cascade run`, the gateway's lines and the incident events) each count
// what they sent, not the sum of both, as they did when the counts were
// loki-client-go's process-wide ones, kept by host.
func TestSendersToOneHostCountApart(t *testing.T) {
	vl := testenv.VictoriaLogsForTest(t)
	gatewayCfg := testConfig(vl.LokiPushURL())
	gatewayCfg.Component = "gateway"
	eventsCfg := testConfig(vl.LokiPushURL())
	eventsCfg.Component = "events"
	gateway, err := New(gatewayCfg, logger())
	require.NoError(t, err)
	events, err := New(eventsCfg, logger())
	require.NoError(t, err)

	for i := range 300 {
		require.True(t, gateway.Send(model.LabelSet{"source": "gateway"}, time.Now(), fmt.Sprintf("line %d", i)))
		if i%10 == 0 {
			require.True(t, events.Send(model.LabelSet{"source": "events"}, time.Now(), fmt.Sprintf("event %d", i)))
		}
	}
	require.NoError(t, gateway.Close(t.Context()))
	require.NoError(t, events.Close(t.Context()))
	require.Equal(t, Stats{Enqueued: 300, Handed: 300, Sent: 300}, gateway.Stats())
	require.Equal(t, Stats{Enqueued: 30, Handed: 30, Sent: 30}, events.Stats())
	require.Len(t, waitArrived(t, vl, `{source="events"}`, 30), 30)
	m := scrapeClient(t, events)
	require.Equal(t, 30.0, m[`cascade_loki_entries_sent_total{component="events"}`])
}

// TestCollectIsCheap: a scrape of the sender costs the same however much
// else the process registers. It used to gather the whole default registry
// to read the client's counters.
func TestCollectIsCheap(t *testing.T) {
	c, err := New(testConfig("http://127.0.0.1:1/push"), logger())
	require.NoError(t, err)
	defer c.Close(t.Context())
	others := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_test_unrelated_total", Help: "x"}, []string{"n"})
	for i := range 5000 {
		others.WithLabelValues(fmt.Sprint(i)).Inc()
	}
	prometheus.MustRegister(others)
	defer prometheus.Unregister(others)

	ch := make(chan prometheus.Metric, 100)
	allocs := testing.AllocsPerRun(20, func() {
		c.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	})
	require.Less(t, allocs, 100.0, "allocations of one Collect")
}

// TestRefusedAndRetriedPushes: what the store refuses (4xx) is given up at
// once; what it asks to retry (429, 5xx) is retried. A stand-in store, for
// answers a real one gives only when misused or overloaded.
func TestRefusedAndRetriedPushes(t *testing.T) {
	var calls atomic.Int32
	answers := []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusNoContent, http.StatusBadRequest}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1)) - 1
		require.Equal(t, "application/x-protobuf", r.Header.Get("Content-Type"))
		w.WriteHeader(answers[min(n, len(answers)-1)])
	}))
	defer srv.Close()
	c, err := New(testConfig(srv.URL+"/loki/api/v1/push"), logger())
	require.NoError(t, err)
	require.True(t, c.Send(model.LabelSet{"source": "test"}, time.Now(), "first"))
	require.Eventually(t, func() bool { return c.Stats().Sent == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int32(3), calls.Load(), "429 and 503 retried")
	require.True(t, c.Send(model.LabelSet{"source": "test"}, time.Now(), "second"))
	require.NoError(t, c.Close(t.Context()))
	require.Equal(t, int32(4), calls.Load(), "400 not retried")
	require.Equal(t, Stats{Enqueued: 2, Handed: 2, Sent: 1, SendFailed: 1}, c.Stats())
}
