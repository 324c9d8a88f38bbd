// Package loki is Cascade's one way of shipping log entries to Loki (or any
// store that speaks the Loki push API). It wraps
// github.com/grafana/loki-client-go behind a bounded in-memory queue so that a
// slow or dead store never blocks the caller: when the queue is full an entry
// is dropped and counted, never waited for.
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

	lokiclient "github.com/grafana/loki-client-go/loki"
	"github.com/grafana/loki-client-go/pkg/backoff"
	"github.com/grafana/loki-client-go/pkg/urlutil"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Defaults, exported so commands can show them in their flag help.
const (
	DefaultBatchWait     = time.Second
	DefaultBatchSize     = 1 << 20 // bytes of log lines per push request
	DefaultQueueCapacity = 10000   // entries
	DefaultTimeout       = 10 * time.Second
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	// DefaultMaxRetries bounds how long one batch is retried (about 1.5 min
	// with the backoff above) before the client gives it up. loki-client-go's
	// own default (10 retries up to 5 min apart, about 8.5 min) keeps the
	// client stuck on one batch far longer than is useful during an incident.
	DefaultMaxRetries = 6
)

// Drop reasons, the values of cascade_loki_entries_dropped_total{reason}.
const (
	ReasonQueueFull     = "queue_full"     // the bounded queue was full
	ReasonInvalidLabels = "invalid_labels" // labels Loki would refuse
	ReasonClosed        = "closed"         // Send after Close
	ReasonShutdown      = "shutdown"       // still queued when Close gave up
	ReasonSendFailed    = "send_failed"    // the client gave the batch up after its retries
)

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// URL is the push endpoint, e.g. http://loki:3100/loki/api/v1/push or
	// VictoriaLogs' http://host:9428/insert/loki/api/v1/push.
	URL string
	// TenantID is sent as X-Scope-OrgID when set.
	TenantID string
	// Component names the sender in the cascade_loki_* metrics (constant
	// label component), so several senders can share one registry.
	Component string
	// BatchWait is the longest an entry waits in the client before its
	// batch is pushed; BatchSize the most bytes of lines in one push.
	BatchWait time.Duration
	BatchSize int
	// QueueCapacity bounds the entries waiting in front of the client.
	QueueCapacity int
	// Timeout bounds one push request.
	Timeout time.Duration
	// MinBackoff, MaxBackoff and MaxRetries shape the client's retries of a
	// failed push (only 429, 5xx and connection errors are retried).
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
	if err != nil {
		return fmt.Errorf("loki: URL %q: %w", c.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loki: URL %q: want http(s)://host[:port]/path", c.URL)
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
		// Zero would mean "retry forever" to the client: one dead store would
		// then hold a batch, and everything behind it, for good.
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
	logger *slog.Logger
	client *lokiclient.Client
	host   string // the label loki-client-go's own counters carry

	queue     chan entry
	closeOnce sync.Once
	closing   chan struct{} // closed by Close: forward drains and stops
	done      chan struct{} // closed when the client has flushed and stopped
	abandon   atomic.Bool   // set when Close gave up waiting

	mu     sync.RWMutex // Send holds it for reading; Close for writing, so no send races the queue's closing
	closed bool

	enqueued   atomic.Uint64
	handed     atomic.Uint64
	dropFull   atomic.Uint64
	dropLabels atomic.Uint64
	dropClosed atomic.Uint64
	dropShut   atomic.Uint64
	// Baselines of loki-client-go's process-wide counters at New, so this
	// Client reports only what happened since it started.
	sentBase, failedBase float64

	descs clientDescs
}

// New starts a Client. It does not contact the store: the first push happens
// when the first batch is due.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var u urlutil.URLValue
	if err := u.Set(cfg.URL); err != nil {
		return nil, fmt.Errorf("loki: URL %q: %w", cfg.URL, err)
	}
	ccfg := lokiclient.Config{
		URL:       u,
		BatchWait: cfg.BatchWait,
		BatchSize: cfg.BatchSize,
		BackoffConfig: backoff.BackoffConfig{
			MinBackoff: cfg.MinBackoff,
			MaxBackoff: cfg.MaxBackoff,
			MaxRetries: cfg.MaxRetries,
		},
		Timeout:  cfg.Timeout,
		TenantID: cfg.TenantID,
	}
	lc, err := lokiclient.NewWithLogger(ccfg, kitLogger{logger})
	if err != nil {
		return nil, fmt.Errorf("loki: %w", err)
	}
	c := &Client{
		cfg:     cfg,
		logger:  logger,
		client:  lc,
		host:    u.Host,
		queue:   make(chan entry, cfg.QueueCapacity),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		descs:   newClientDescs(cfg.Component),
	}
	c.sentBase, c.failedBase = c.clientCounters()
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

// forward hands queued entries to the client one by one. Handle blocks while
// the client retries a batch; that is why the queue is in front of it.
func (c *Client) forward() {
	defer close(c.done)
	for e := range c.queue {
		if c.abandon.Load() {
			c.dropShut.Add(1)
			continue
		}
		_ = c.client.Handle(e.labels, e.time, e.line) // always nil
		c.handed.Add(1)
	}
	// Stop pushes what the client still batches, with its retries.
	c.client.Stop()
}

// Close stops accepting entries, hands what is queued to the client and lets
// it push its last batch. It waits until that is done or ctx ends; in the
// latter case it returns ctx's error, entries still queued are counted as
// dropped (reason shutdown), and the client finishes in the background.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.queue)
		c.mu.Unlock()
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.abandon.Store(true)
		// The queue is closed: this loop ends once it is empty. forward takes
		// part in draining too and counts what it takes the same way.
		for range c.queue {
			c.dropShut.Add(1)
		}
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
			"Entries that will never reach Loki, by reason: queue_full, invalid_labels, closed, shutdown, or send_failed (the client gave the batch up after its retries).",
			[]string{"reason"}, constLabels),
		handed: prometheus.NewDesc("cascade_loki_entries_handed_total",
			"Entries handed from the queue to the Loki client, which batches and pushes them.", nil, constLabels),
		sent: prometheus.NewDesc("cascade_loki_entries_sent_total",
			"Entries the store acknowledged, as counted by the Loki client.", nil, constLabels),
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
	sent, failed := c.clientCounters()
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	counter(d.enqueued, float64(c.enqueued.Load()))
	counter(d.handed, float64(c.handed.Load()))
	counter(d.sent, max(0, sent-c.sentBase))
	counter(d.dropped, float64(c.dropFull.Load()), ReasonQueueFull)
	counter(d.dropped, float64(c.dropLabels.Load()), ReasonInvalidLabels)
	counter(d.dropped, float64(c.dropClosed.Load()), ReasonClosed)
	counter(d.dropped, float64(c.dropShut.Load()), ReasonShutdown)
	counter(d.dropped, max(0, failed-c.failedBase), ReasonSendFailed)
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
	sent, failed := c.clientCounters()
	return Stats{
		Enqueued:         c.enqueued.Load(),
		Handed:           c.handed.Load(),
		Sent:             uint64(max(0, sent-c.sentBase)),
		SendFailed:       uint64(max(0, failed-c.failedBase)),
		DroppedQueueFull: c.dropFull.Load(),
		DroppedInvalid:   c.dropLabels.Load(),
		DroppedClosed:    c.dropClosed.Load(),
		DroppedShutdown:  c.dropShut.Load(),
		Queued:           len(c.queue),
	}
}

// clientCounters reads loki-client-go's entry counters for this Client's
// host. The client keeps them only in the process-wide default registry (it
// registers them when imported) and exposes no other way to learn what was
// pushed or given up, so two Clients pushing to the same host:port see each
// other's counts there.
func (c *Client) clientCounters() (sent, failed float64) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return 0, 0
	}
	for _, mf := range mfs {
		var dst *float64
		switch mf.GetName() {
		case "promtail_sent_entries_total":
			dst = &sent
		case "promtail_dropped_entries_total":
			dst = &failed
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			if hostOf(m) == c.host {
				*dst += m.GetCounter().GetValue()
			}
		}
	}
	return sent, failed
}

func hostOf(m *dto.Metric) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == lokiclient.HostLabel {
			return lp.GetValue()
		}
	}
	return ""
}

// kitLogger adapts slog to the go-kit logger loki-client-go takes.
type kitLogger struct{ l *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	level := slog.LevelInfo
	msg := "loki client"
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		switch key {
		case "level":
			switch fmt.Sprint(keyvals[i+1]) {
			case "debug":
				level = slog.LevelDebug
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
			continue
		case "msg":
			msg = fmt.Sprint(keyvals[i+1])
			continue
		}
		attrs = append(attrs, key, keyvals[i+1])
	}
	k.l.Log(context.Background(), level, msg, attrs...)
	return nil
}
