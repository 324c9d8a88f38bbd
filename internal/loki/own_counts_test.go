package loki

import (
	"fmt"
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
