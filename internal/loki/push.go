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

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/common/version"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/cascade-sre/cascade/internal/redact"
)

// maxErrorBody bounds what is read of a refused push's answer for the log.
const maxErrorBody = 1 << 10

// batch is what one push request carries: entries grouped by stream.
type batch struct {
	streams map[string]*stream // by the stream's label string
	bytes   int                // of lines
	entries int
	created time.Time
}

// stream is one stream's entries in a batch.
type stream struct {
	labels  string
	entries []streamEntry
}

type streamEntry struct {
	time time.Time
	line string
}

func newBatch() *batch { return &batch{streams: map[string]*stream{}} }

func (b *batch) add(e entry) {
	if b.entries == 0 {
		b.created = time.Now()
	}
	key := e.labels.String()
	s := b.streams[key]
	if s == nil {
		s = &stream{labels: key}
		b.streams[key] = s
	}
	s.entries = append(s.entries, streamEntry{e.time, e.line})
	b.bytes += len(e.line)
	b.entries++
}

// Field numbers of Loki's push protocol (logproto, push.proto):
// PushRequest{streams 1}, StreamAdapter{labels 1, entries 2},
// EntryAdapter{timestamp 1, line 2}, google.protobuf.Timestamp{seconds 1,
// nanos 2}.
const (
	fieldRequestStreams  protowire.Number = 1
	fieldStreamLabels    protowire.Number = 1
	fieldStreamEntries   protowire.Number = 2
	fieldEntryTimestamp  protowire.Number = 1
	fieldEntryLine       protowire.Number = 2
	fieldTimestampSecond protowire.Number = 1
	fieldTimestampNanos  protowire.Number = 2
)

// encode makes the body of a push request: the protobuf PushRequest,
// snappy-compressed, as Promtail sends it. The message is written field by
// field: Loki's own Go package for it links gRPC and gogo/protobuf, which
// the exporter's executable would carry (and touch at start-up) for one
// message of four fields.
func (b *batch) encode() []byte {
	var buf []byte
	for _, s := range b.streams {
		buf = protowire.AppendTag(buf, fieldRequestStreams, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(s.size()))
		buf = protowire.AppendTag(buf, fieldStreamLabels, protowire.BytesType)
		buf = protowire.AppendString(buf, s.labels)
		for _, e := range s.entries {
			ts := e.timestampSize()
			buf = protowire.AppendTag(buf, fieldStreamEntries, protowire.BytesType)
			buf = protowire.AppendVarint(buf, uint64(e.size(ts)))
			buf = protowire.AppendTag(buf, fieldEntryTimestamp, protowire.BytesType)
			buf = protowire.AppendVarint(buf, uint64(ts))
			if sec := e.time.Unix(); sec != 0 {
				buf = protowire.AppendTag(buf, fieldTimestampSecond, protowire.VarintType)
				buf = protowire.AppendVarint(buf, uint64(sec))
			}
			if nanos := e.time.Nanosecond(); nanos != 0 {
				buf = protowire.AppendTag(buf, fieldTimestampNanos, protowire.VarintType)
				buf = protowire.AppendVarint(buf, uint64(nanos))
			}
			if e.line != "" {
				buf = protowire.AppendTag(buf, fieldEntryLine, protowire.BytesType)
				buf = protowire.AppendString(buf, e.line)
			}
		}
	}
	return snappy.Encode(nil, buf)
}

// size is the length of the stream's StreamAdapter message.
func (s *stream) size() int {
	n := protowire.SizeTag(fieldStreamLabels) + protowire.SizeBytes(len(s.labels))
	for _, e := range s.entries {
		n += protowire.SizeTag(fieldStreamEntries) + protowire.SizeBytes(e.size(e.timestampSize()))
	}
	return n
}

// size is the length of the entry's EntryAdapter message, whose timestamp
// takes ts bytes.
func (e streamEntry) size(ts int) int {
	n := protowire.SizeTag(fieldEntryTimestamp) + protowire.SizeBytes(ts)
	if e.line != "" {
		n += protowire.SizeTag(fieldEntryLine) + protowire.SizeBytes(len(e.line))
	}
	return n
}

// timestampSize is the length of the entry's Timestamp message; fields
// at their zero value are left out, as proto3 does.
func (e streamEntry) timestampSize() int {
	n := 0
	if sec := e.time.Unix(); sec != 0 {
		n += protowire.SizeTag(fieldTimestampSecond) + protowire.SizeVarint(uint64(sec))
	}
	if nanos := e.time.Nanosecond(); nanos != 0 {
		n += protowire.SizeTag(fieldTimestampNanos) + protowire.SizeVarint(uint64(nanos))
	}
	return n
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
	body := b.encode()
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
