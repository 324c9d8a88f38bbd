package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/rules"
)

// Notifier sends alerts to one Alertmanager the way the engine does
// (Prometheus's notifier, alerts held until the Alertmanager is known), for
// evaluations that are not the engine's own: the demo's.
type Notifier struct {
	manager *notifier.Manager
	metrics *prometheus.Registry
	sender  *heldSender
	notify  rules.NotifyFunc
	done    chan struct{}
}

// NewNotifier starts a notifier sending to the Alertmanager at am (its API
// v2 under am's path), with alerts' generator URLs under externalURL.
func NewNotifier(am *url.URL, externalURL string, logger *slog.Logger) (*Notifier, error) {
	if am.Host == "" || (am.Scheme != "http" && am.Scheme != "https") {
		return nil, fmt.Errorf("engine: Alertmanager URL %q is not an http(s) URL", am)
	}
	cfg, err := config.Load(fmt.Sprintf("alerting:\n  alertmanagers:\n    - scheme: %s\n      path_prefix: %q\n      static_configs: [{targets: [%q]}]\n",
		am.Scheme, am.Path, am.Host), logger)
	if err != nil {
		return nil, fmt.Errorf("engine: Alertmanager %s: %w", am, err)
	}
	const queueCapacity = 10_000
	reg := prometheus.NewRegistry()
	n := &Notifier{
		manager: notifier.NewManager(&notifier.Options{QueueCapacity: queueCapacity, Registerer: reg},
			model.UTF8Validation, logger.With("component", "notifier")),
		metrics: reg,
		done:    make(chan struct{}),
	}
	if err := n.manager.ApplyConfig(cfg); err != nil {
		return nil, fmt.Errorf("engine: Alertmanager %s: %w", am, err)
	}
	n.sender = newHeldSender(n.manager, queueCapacity, prometheus.NewRegistry())
	n.notify = rules.SendAlerts(n.sender, externalURL)
	// What discovery would say of a static target, once.
	discovered := make(chan map[string][]*targetgroup.Group, 1)
	discovered <- map[string][]*targetgroup.Group{"config-0": {{Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(am.Host)}}}}}
	targets := make(chan map[string][]*targetgroup.Group)
	go n.manager.Run(targets)
	go n.sender.relay(discovered, targets, n.done)
	return n, nil
}

// Notify is the rule manager's NotifyFunc through this notifier.
func (n *Notifier) Notify(ctx context.Context, expr string, alerts ...*rules.Alert) {
	n.notify(ctx, expr, alerts...)
}

// Close sends what is queued (waiting at most timeout) and stops.
func (n *Notifier) Close(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for n.queued() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(n.done)
	n.manager.Stop()
}

// queued is how many alerts wait to be sent: those held for the
// Alertmanager to be known, and the notifier's queue.
func (n *Notifier) queued() float64 {
	n.sender.mu.Lock()
	held := len(n.sender.pending)
	n.sender.mu.Unlock()
	mfs, err := n.metrics.Gather()
	if err != nil {
		return float64(held)
	}
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_notifications_queue_length" {
			for _, m := range mf.GetMetric() {
				return float64(held) + m.GetGauge().GetValue()
			}
		}
	}
	return float64(held)
}
