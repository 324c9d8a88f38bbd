package engine

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/stretchr/testify/require"
)

// TestHeldSenderHoldsUntilAnAlertmanagerIsKnown drives Prometheus's notifier
// through the held sender: alerts sent before discovery has named an
// Alertmanager are held (the latest state of each, up to the capacity,
// beyond it dropped and counted), handed to the notifier's send loop as
// soon as discovery names one, and after that pass straight through.
func TestHeldSenderHoldsUntilAnAlertmanagerIsKnown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String() // sends fail, and are counted per alert: what was handed over shows
	require.NoError(t, l.Close())

	reg := prometheus.NewRegistry()
	n := notifier.NewManager(&notifier.Options{QueueCapacity: 100, Registerer: reg}, model.UTF8Validation, nil)
	cfg, err := config.Load(`alerting:
  alertmanagers:
    - static_configs: [{targets: ["`+dead+`"]}]
      timeout: 1s
`, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, n.ApplyConfig(cfg))
	s := newHeldSender(n, 2, reg)
	targets := make(chan map[string][]*targetgroup.Group)
	discovered := make(chan map[string][]*targetgroup.Group)
	done := make(chan struct{})
	go n.Run(targets)
	go s.relay(discovered, targets, done)
	t.Cleanup(func() { close(done); n.Stop() })

	alert := func(name, state string) *notifier.Alert {
		return &notifier.Alert{Labels: labels.FromStrings("alertname", name, "state", state)}
	}
	firing := func(name string) *notifier.Alert {
		return &notifier.Alert{Labels: labels.FromStrings("alertname", name), StartsAt: time.Now()}
	}
	s.Send(firing("A"))
	s.Send(firing("A"), firing("B")) // A again: its latest state replaces the first
	require.Equal(t, 2.0, testutil.ToFloat64(s.held))
	s.Send(alert("C", "over capacity"))
	require.Equal(t, 2.0, testutil.ToFloat64(s.held))
	require.Equal(t, 1.0, testutil.ToFloat64(s.dropped))

	errorsTotal := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "prometheus_notifications_errors_total" {
				sum := 0.0
				for _, m := range mf.Metric {
					sum += m.GetCounter().GetValue()
				}
				return sum
			}
		}
		return 0
	}
	require.Zero(t, errorsTotal())

	// Discovery names the Alertmanager: the held alerts go to its send loop.
	discovered <- map[string][]*targetgroup.Group{"config-0": {{
		Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(dead)}},
		Source:  "0",
	}}}
	require.Eventually(t, func() bool { return testutil.ToFloat64(s.held) == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Len(t, n.Alertmanagers(), 1)
	require.Eventually(t, func() bool { return errorsTotal() == 2 }, 10*time.Second, 10*time.Millisecond,
		"the two held alerts (A once, B) were not handed to the send loop")

	// Known now: straight through, nothing held.
	s.Send(firing("D"))
	require.Zero(t, testutil.ToFloat64(s.held))
	require.Eventually(t, func() bool { return errorsTotal() == 3 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(s.dropped))
}
