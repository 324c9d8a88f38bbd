package loki

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/common/version"

	"github.com/cascade-sre/cascade/internal/redact"
)

// maxErrorBody bounds what is read of a refused push's answer for the log.
const maxErrorBody = 1 << 10

// batch is what one push request carries: entries grouped by stream.
type batch struct {
	streams map[string]*push.Stream // by the stream's label string
	bytes   int                     // of lines
	entries int
	created time.Time
}

func newBatch() *batch { return &batch{streams: map[string]*push.Stream{}} }

func (b *batch) add(e entry) {
	if b.entries == 0 {
		b.created = time.Now()
	}
	key := e.labels.String()
	s := b.streams[key]
	if s == nil {
		s = &push.Stream{Labels: key}
		b.streams[key] = s
	}
	s.Entries = append(s.Entries, push.Entry{Timestamp: e.time, Line: e.line})
	b.bytes += len(e.line)
	b.entries++
}

// encode makes the body of a push request: the protobuf PushRequest,
// snappy-compressed, as Promtail sends it.
func (b *batch) encode() ([]byte, error) {
	req := push.PushRequest{Streams: make([]push.Stream, 0, len(b.streams))}
	for _, s := range b.streams {
		req.Streams = append(req.Streams, *s)
	}
	buf, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	return snappy.Encode(nil, buf), nil
}

// pusher sends batches to the store and keeps this sender's own counts of
// entries the store took and entries given up. It is used by one goroutine
// (Client.forward), which is why its outage state needs no lock.
type pusher struct {
	cfg    Config
	client *http.Client
	logger *slog.Logger

	sent, failed atomic.Uint64

	failing      bool // the last push attempt failed
	failingSince time.Time
	gaveUp       uint64 // entries given up since failing began
}

func newPusher(cfg Config, logger *slog.Logger) *pusher {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &pusher{
		cfg:    cfg,
		client: &http.Client{Transport: transport},
		logger: logger,
	}
}

// push sends b, retrying 429s, 5xx and errors of the connection with a
// growing, jittered delay, up to cfg.MaxRetries attempts in all. It returns
// false when ctx ended first: the batch is then the caller's to count.
func (p *pusher) push(ctx context.Context, b *batch) bool {
	body, err := b.encode()
	if err != nil { // not seen with valid labels and lines; counted all the same
		p.failed.Add(uint64(b.entries))
		p.logger.Error("cannot encode a batch for Loki; dropped", "entries", b.entries, "err", err)
		return true
	}
	delay := p.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		retry, err := p.send(ctx, body)
		if err == nil {
			p.sent.Add(uint64(b.entries))
			p.recovered()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.attemptFailed(err)
		if !retry || attempt >= p.cfg.MaxRetries {
			p.giveUp(b, attempt, err)
			return true
		}
		// A delay drawn from [delay, 2·delay), capped, as Promtail does.
		wait := delay + rand.N(delay)
		delay = min(2*delay, p.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(wait, p.cfg.MaxBackoff)):
		}
	}
}

// send makes one push request. retry says whether a failure may pass.
func (p *pusher) send(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	// Errors leave the URL out: the logger names it, masked.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("cannot make the push request") // not seen: the URL was validated
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "cascade/"+version.Version)
	if p.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", p.cfg.TenantID)
	}
	resp, err := p.client.Do(req)
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		err = uerr.Err
	}
	if err != nil {
		return true, errors.New(redact.URL(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // lets the connection be reused
		return false, nil
	}
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, maxErrorBody)).ReadString('\n')
	err = fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(line))
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5, err
}

// attemptFailed logs the first failed attempt of an outage; the others are
// retries of the same trouble.
func (p *pusher) attemptFailed(err error) {
	if p.failing {
		return
	}
	p.failing, p.failingSince, p.gaveUp = true, time.Now(), 0
	p.logger.Warn("cannot push to Loki; retrying, and giving batches up after their retries (counted as send_failed)", "err", err)
}

// giveUp counts a batch that will not be pushed, and logs the first of an
// outage.
func (p *pusher) giveUp(b *batch, attempts int, err error) {
	p.failed.Add(uint64(b.entries))
	if p.gaveUp == 0 {
		p.logger.Error("gave up a batch for Loki; more are counted, not logged, until a push succeeds",
			"entries", b.entries, "attempts", attempts, "err", err)
	}
	p.gaveUp += uint64(b.entries)
}

// recovered logs the end of an outage.
func (p *pusher) recovered() {
	if !p.failing {
		return
	}
	p.logger.Info("pushes to Loki succeed again", "failing_for", time.Since(p.failingSince).Round(time.Millisecond), "entries_given_up", p.gaveUp)
	p.failing = false
}
