// Package loki is Cascade's one way of shipping log entries to Loki (or any
// store that speaks the Loki push API): a bounded in-memory queue in front of
// a sender that batches entries and pushes them as Promtail does
// (snappy-compressed protobuf), retrying a failed push for a while. A slow or
// dead store never blocks the caller: when the queue is full an entry is
// dropped and counted, never waited for. Every entry is counted once, as
// queued, sent or dropped with a reason, and each Client keeps its own
// counts, however many push to the same store.
//
// The gateway exporter forwards access log lines through it; the rule engine
// ships incident events through it too.
package loki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/internal/redact"
)

// Defaults, exported so commands can show them in their flag help.
const (
	DefaultBatchWait     = time.Second
	DefaultBatchSize     = 1 << 20 // bytes of log lines per push request
	DefaultQueueCapacity = 10000   // entries
	DefaultTimeout       = 10 * time.Second
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	// DefaultMaxRetries bounds how long one batch is tried (six attempts,
	// about 1.5 min with the backoff and timeout above) before it is given
	// up. Promtail's default (10, up to 5 min apart, about 8.5 min) keeps
	// the sender stuck on one batch far longer than is useful during an
	// incident.
	DefaultMaxRetries = 6
)

// Drop reasons, the values of cascade_loki_entries_dropped_total{reason}.
const (
	ReasonQueueFull     = "queue_full"     // the bounded queue was full
	ReasonInvalidLabels = "invalid_labels" // labels Loki would refuse
	ReasonClosed        = "closed"         // Send after Close
	ReasonShutdown      = "shutdown"       // still queued or batched when Close gave up
	ReasonSendFailed    = "send_failed"    // the batch was given up after its retries, or refused
)

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// URL is the push endpoint, e.g. http://loki:3100/loki/api/v1/push or
	// VictoriaLogs' http://host:9428/insert/loki/api/v1/push. A user and
	// password in it are sent as basic auth, and masked in logs and errors.
	URL string
	// TenantID is sent as X-Scope-OrgID when set.
	TenantID string
	// Component names the sender in the cascade_loki_* metrics (constant
	// label component), so several senders can share one registry.
	Component string
	// BatchWait is the longest an entry waits in a batch before the batch
	// is pushed; BatchSize the most bytes of lines in one push.
	BatchWait time.Duration
	BatchSize int
	// QueueCapacity bounds the entries waiting in front of the client.
	QueueCapacity int
	// Timeout bounds one push request.
	Timeout time.Duration
	// MinBackoff, MaxBackoff and MaxRetries shape the retries of a failed
	// push (only 429, 5xx and connection errors are retried): MaxRetries
	// attempts in all, the delay between them growing from MinBackoff to
	// MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	MaxRetries int
}

// DefaultConfig returns the defaults, with no URL.
func DefaultConfig() Config {
	return Config{
		BatchWait:     DefaultBatchWait,
		BatchSize:     DefaultBatchSize,
		QueueCapacity: DefaultQueueCapacity,
		Timeout:       DefaultTimeout,
		MinBackoff:    DefaultMinBackoff,
		MaxBackoff:    DefaultMaxBackoff,
		MaxRetries:    DefaultMaxRetries,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("loki: URL must not be empty")
	}
	u, err := url.Parse(c.URL)
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		err = uerr.Err // without the URL it quotes, password and all
	}
	if err != nil {
		return fmt.Errorf("loki: URL %q: %w", redact.URL(c.URL), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loki: URL %q: want http(s)://host[:port]/path", redact.URL(c.URL))
	}
	if c.Component == "" || !model.LabelValue(c.Component).IsValid() {
		return fmt.Errorf("loki: component %q must be a non-empty UTF-8 string", c.Component)
	}
	switch {
	case c.BatchWait <= 0:
		return fmt.Errorf("loki: batch wait %s must be positive", c.BatchWait)
	case c.BatchSize <= 0:
		return fmt.Errorf("loki: batch size %d must be positive", c.BatchSize)
	case c.QueueCapacity <= 0:
		return fmt.Errorf("loki: queue capacity %d must be positive", c.QueueCapacity)
	case c.Timeout <= 0:
		return fmt.Errorf("loki: timeout %s must be positive", c.Timeout)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("loki: backoff %s..%s must be positive and increasing", c.MinBackoff, c.MaxBackoff)
	case c.MaxRetries <= 0:
		// Zero meant "retry forever" to Promtail's client: one dead store
		// would hold a batch, and everything behind it, for good.
		return fmt.Errorf("loki: max retries %d must be positive", c.MaxRetries)
	}
	return nil
}

type entry struct {
	labels model.LabelSet
	time   time.Time
	line   string
}

// Client sends entries to Loki without ever blocking its callers.
type Client struct {
	cfg    Config
	pusher *pusher

	queue     chan entry
	closeOnce sync.Once
	done      chan struct{}      // closed when forward has pushed its last batch
	stop      context.Context    // ends when Close gives up: pushes stop at once
	abandon   context.CancelFunc // ends stop

	mu     sync.RWMutex // Send holds it for reading; Close for writing, so no send races the queue's closing
	closed bool

	enqueued   atomic.Uint64
	handed     atomic.Uint64
	dropFull   atomic.Uint64
	dropLabels atomic.Uint64
	dropClosed atomic.Uint64
	dropShut   atomic.Uint64

	descs clientDescs
}

// New starts a Client. It does not contact the store: the first push happens
// when the first batch is due.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	stop, abandon := context.WithCancel(context.Background())
	c := &Client{
		cfg:     cfg,
		pusher:  newPusher(cfg, logger.With("url", redact.URL(cfg.URL))),
		queue:   make(chan entry, cfg.QueueCapacity),
		done:    make(chan struct{}),
		stop:    stop,
		abandon: abandon,
		descs:   newClientDescs(cfg.Component),
	}
	go c.forward()
	return c, nil
}

// Send queues one entry and returns at once: true if it was queued, false if
// it was dropped (queue full, labels Loki would refuse, or Close called).
// labels must not be changed after the call; callers typically reuse one
// LabelSet per stream.
func (c *Client) Send(labels model.LabelSet, t time.Time, line string) bool {
	if !validStream(labels) {
		c.dropLabels.Add(1)
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		c.dropClosed.Add(1)
		return false
	}
	select {
	case c.queue <- entry{labels: labels, time: t, line: line}:
		c.enqueued.Add(1)
		return true
	default:
		c.dropFull.Add(1)
		return false
	}
}

// validStream reports whether Loki would take labels as a stream: at least
// one label, names of the classic Prometheus form ([a-zA-Z_][a-zA-Z0-9_]*,
// which Loki requires) not reserved with "__", non-empty UTF-8 values.
func validStream(ls model.LabelSet) bool {
	if len(ls) == 0 {
		return false
	}
	for n, v := range ls {
		if !model.LegacyValidation.IsValidLabelName(string(n)) || strings.HasPrefix(string(n), "__") || !utf8.ValidString(string(v)) || v == "" {
			return false
		}
	}
	return true
}

// forward batches queued entries and pushes each batch when it is full or
// BatchWait old. While a push is retried, entries wait in the queue, which
// is why the queue is in front: Send never waits. When the queue is closed
// it pushes the last batch and ends.
func (c *Client) forward() {
	defer close(c.done)
	tick := time.NewTicker(max(c.cfg.BatchWait/10, 10*time.Millisecond))
	defer tick.Stop()
	b := newBatch()
	flush := func() {
		if b.entries > 0 && !c.pusher.push(c.stop, b) {
			c.dropShut.Add(uint64(b.entries)) // Close gave up on it
		}
		b = newBatch()
	}
	for {
		select {
		case e, ok := <-c.queue:
			if !ok {
				flush()
				return
			}
			if c.stop.Err() != nil {
				c.dropShut.Add(1)
				continue
			}
			if b.entries > 0 && b.bytes+len(e.line) > c.cfg.BatchSize {
				flush()
			}
			b.add(e)
			c.handed.Add(1)
		case <-tick.C:
			if b.entries > 0 && time.Since(b.created) >= c.cfg.BatchWait {
				flush()
			}
		}
	}
}

// Close stops accepting entries and pushes what is queued and batched. It
// waits until that is done or ctx ends; in the latter case it stops pushing
// at once, counts what was not pushed as dropped (reason shutdown), and
// returns ctx's error.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.queue)
		c.mu.Unlock()
	})
	select {
	case <-c.done:
		c.abandon() // nothing left to stop; frees the context
		return nil
	case <-ctx.Done():
		c.abandon()
		// The queue is closed: this loop ends once it is empty. forward takes
		// part in draining too and counts what it takes the same way.
		for range c.queue {
			c.dropShut.Add(1)
		}
		<-c.done // at once: its push was cancelled
		return fmt.Errorf("loki: close: %w", ctx.Err())
	}
}

// clientDescs are the descriptors of one Client's metrics.
type clientDescs struct {
	enqueued, dropped, handed, sent, queueLen, queueCap *prometheus.Desc
}

func newClientDescs(component string) clientDescs {
	constLabels := prometheus.Labels{"component": component}
	return clientDescs{
		enqueued: prometheus.NewDesc("cascade_loki_entries_enqueued_total",
			"Entries accepted into the queue in front of the Loki client.", nil, constLabels),
		dropped: prometheus.NewDesc("cascade_loki_entries_dropped_total",
			"Entries that will never reach Loki, by reason: queue_full, invalid_labels, closed, shutdown, or send_failed (the batch was refused, or given up after its retries).",
			[]string{"reason"}, constLabels),
		handed: prometheus.NewDesc("cascade_loki_entries_handed_total",
			"Entries taken from the queue into a batch to push.", nil, constLabels),
		sent: prometheus.NewDesc("cascade_loki_entries_sent_total",
			"Entries the store acknowledged.", nil, constLabels),
		queueLen: prometheus.NewDesc("cascade_loki_queue_length",
			"Entries waiting in the queue in front of the Loki client.", nil, constLabels),
		queueCap: prometheus.NewDesc("cascade_loki_queue_capacity",
			"Capacity of the queue in front of the Loki client; entries beyond it are dropped.", nil, constLabels),
	}
}

// Describe implements prometheus.Collector.
func (c *Client) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, desc := range []*prometheus.Desc{d.enqueued, d.dropped, d.handed, d.sent, d.queueLen, d.queueCap} {
		ch <- desc
	}
}

// Collect implements prometheus.Collector.
func (c *Client) Collect(ch chan<- prometheus.Metric) {
	d := c.descs
	sent, failed := c.pusher.sent.Load(), c.pusher.failed.Load()
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	counter(d.enqueued, float64(c.enqueued.Load()))
	counter(d.handed, float64(c.handed.Load()))
	counter(d.sent, float64(sent))
	counter(d.dropped, float64(c.dropFull.Load()), ReasonQueueFull)
	counter(d.dropped, float64(c.dropLabels.Load()), ReasonInvalidLabels)
	counter(d.dropped, float64(c.dropClosed.Load()), ReasonClosed)
	counter(d.dropped, float64(c.dropShut.Load()), ReasonShutdown)
	counter(d.dropped, float64(failed), ReasonSendFailed)
	ch <- prometheus.MustNewConstMetric(d.queueLen, prometheus.GaugeValue, float64(len(c.queue)))
	ch <- prometheus.MustNewConstMetric(d.queueCap, prometheus.GaugeValue, float64(cap(c.queue)))
}

// Stats is a snapshot of a Client's counters, for tests and status pages.
type Stats struct {
	Enqueued, Handed, Sent, SendFailed              uint64
	DroppedQueueFull, DroppedInvalid, DroppedClosed uint64
	DroppedShutdown                                 uint64
	Queued                                          int
}

// Stats returns the current counters.
func (c *Client) Stats() Stats {
	return Stats{
		Enqueued:         c.enqueued.Load(),
		Handed:           c.handed.Load(),
		Sent:             c.pusher.sent.Load(),
		SendFailed:       c.pusher.failed.Load(),
		DroppedQueueFull: c.dropFull.Load(),
		DroppedInvalid:   c.dropLabels.Load(),
		DroppedClosed:    c.dropClosed.Load(),
		DroppedShutdown:  c.dropShut.Load(),
		Queued:           len(c.queue),
	}
}
