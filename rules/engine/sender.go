package engine

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/notifier"
)

// heldSender hands alerts to Prometheus's notifier, and holds those that
// come while it knows no Alertmanager yet. The notifier sends only through
// the send loops of the Alertmanagers discovery has named, and drops what
// it is given before that without a trace; the rule manager sends an alert
// again only after its resend delay (a minute). So an alert firing at the
// first evaluation after a start, discovery's first answer being a few
// seconds away, reached Alertmanager a minute late: after a restart
// mid-incident, the page was a minute late. Held alerts are handed over as
// soon as discovery names an Alertmanager: the latest state of each alert,
// at most capacity of them; beyond that they are dropped and counted.
type heldSender struct {
	notifier *notifier.Manager
	capacity int
	held     prometheus.Gauge
	dropped  prometheus.Counter

	mu      sync.Mutex
	pending map[uint64]*notifier.Alert // by label hash: the latest state of each
	order   []uint64                   // in the order they first came
}

func newHeldSender(n *notifier.Manager, capacity int, reg prometheus.Registerer) *heldSender {
	s := &heldSender{
		notifier: n,
		capacity: capacity,
		pending:  map[uint64]*notifier.Alert{},
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cascade_notifications_held",
			Help: "Alerts held because no Alertmanager was known yet when they were sent; handed to the notifier as soon as one is.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cascade_notifications_held_dropped_total",
			Help: "Alerts dropped because more distinct alerts waited for an Alertmanager than the notification queue holds.",
		}),
	}
	reg.MustRegister(s.held, s.dropped)
	return s
}

// Send implements rules.Sender.
func (s *heldSender) Send(alerts ...*notifier.Alert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 && len(s.notifier.Alertmanagers()) > 0 {
		s.notifier.Send(alerts...)
		return
	}
	for _, a := range alerts {
		h := a.Labels.Hash()
		if _, ok := s.pending[h]; !ok {
			if len(s.pending) >= s.capacity {
				s.dropped.Inc()
				continue
			}
			s.order = append(s.order, h)
		}
		s.pending[h] = a
	}
	s.held.Set(float64(len(s.pending)))
	s.flushLocked()
}

// flush hands the held alerts over if an Alertmanager is known now.
func (s *heldSender) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *heldSender) flushLocked() {
	if len(s.pending) == 0 || len(s.notifier.Alertmanagers()) == 0 {
		return
	}
	alerts := make([]*notifier.Alert, 0, len(s.order))
	for _, h := range s.order {
		alerts = append(alerts, s.pending[h])
	}
	s.notifier.Send(alerts...)
	clear(s.pending)
	s.order = s.order[:0]
	s.held.Set(0)
}

// relay passes discovery's target updates on to the notifier, and after
// each hands the held alerts over. Each update is passed twice: the
// notifier applies updates one after the other, so once it takes the second
// it has applied the first, and knows the Alertmanagers it names. (The
// second application changes nothing.) It returns when done is closed.
func (s *heldSender) relay(from <-chan map[string][]*targetgroup.Group, to chan<- map[string][]*targetgroup.Group, done <-chan struct{}) {
	for {
		var update map[string][]*targetgroup.Group
		select {
		case update = <-from:
		case <-done:
			return
		}
		for range 2 {
			select {
			case to <- update:
			case <-done:
				return
			}
		}
		s.flush()
	}
}
