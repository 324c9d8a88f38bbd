package exporters

import (
	"hash/crc32"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/cascade-sre/cascade/exporters/linedeflate"
)

// TextAppender is implemented by exporters with a series per node or more,
// and by the Go runtime's and the process's series: they write those
// families straight in the text exposition format, which costs a fraction
// of building, sorting and checking a protobuf message per series as a
// registry does. The families must not also come from a registry.
//
// Its families come in two kinds. Those that change between most scrapes
// (a timestamp per node) are written on every scrape by AppendText. Those
// that rarely change (a configured duration per node) are written by
// AppendSteadyText, which also says which version of them it wrote; the
// handler keeps that text, and its compressed form, for every scrape until
// SteadyVersion returns another version.
type TextAppender interface {
	AppendText(b []byte) []byte
	AppendSteadyText(b []byte) ([]byte, uint64)
	SteadyVersion() uint64
}

// textFormat is the one format the handler writes; every Prometheus version
// and every Prometheus-compatible scraper accepts it.
var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// HandlerOpts are the choices of a /metrics handler.
type HandlerOpts struct {
	// MaxInFlight is how many scrapes may run at once (0: no limit); more
	// are answered 503 so a scrape storm cannot pile up.
	MaxInFlight int
	// Gzip compresses the body when the scraper accepts it. Off, the text
	// is sent as it is, as kube-state-metrics does by default: at 1,000
	// nodes 156 KiB instead of 14, which a pod network carries in less
	// time than compressing takes (see the README, "Compression").
	Gzip bool
}

// Handler serves /metrics: everything registered in reg, if not nil,
// through the registry, then the families of every TextAppender.
func Handler(reg prometheus.Gatherer, appenders []TextAppender, opts HandlerOpts, logger *slog.Logger) http.Handler {
	h := &handler{reg: reg, appenders: appenders, gzip: opts.Gzip, logger: logger, spare: make(chan *scratch, 1),
		steady: make([]*steadyText, len(appenders))}
	if opts.MaxInFlight > 0 {
		h.inFlight = make(chan struct{}, opts.MaxInFlight)
	}
	return h
}

type handler struct {
	reg       prometheus.Gatherer
	appenders []TextAppender
	gzip      bool
	inFlight  chan struct{}
	logger    *slog.Logger
	// spare keeps one scrape's scratch for the next. A sync.Pool kept up to
	// one per processor, and as many again across a GC: at 5,000 nodes
	// each is ~1 MiB of text, 64 KiB of compressor and ~50 KiB of body,
	// and scrapes of one target come one at a time.
	spare chan *scratch

	// steady holds each appender's steady families as last written; a
	// scrape replaces an entry whose version is behind, never changes one,
	// so it can send an entry without holding steadyMu.
	steadyMu sync.Mutex
	steady   []*steadyText
}

// steadyText is an appender's steady families at one version.
type steadyText struct {
	version uint64
	text    []byte
	deflate []byte // text compressed, for a gzip member (see appendGzip); nil until a scraper asks for gzip
	crc     uint32 // CRC-32 of text
}

// scratch is what one scrape writes into: the exposition text and, when
// the scraper accepts it, a compressor and the compressed body.
type scratch struct {
	text       sliceWriter
	deflate    linedeflate.Encoder
	compressed []byte
}

func (h *handler) getScratch() *scratch {
	select {
	case s := <-h.spare:
		return s
	default:
		return new(scratch)
	}
}

func (h *handler) putScratch(s *scratch) {
	select {
	case h.spare <- s:
	default: // another scrape's is kept already
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
			return
		}
	}

	sc := h.getScratch()
	defer h.putScratch(sc)
	buf := &sc.text
	buf.b = buf.b[:0]

	// A failing collector is logged and the rest is still served, as
	// promhttp's ContinueOnError does: one broken source must not blind
	// Prometheus to all the others.
	if h.reg != nil {
		mfs, err := h.reg.Gather()
		if err != nil {
			h.logger.Error("gathering metrics", "err", err)
		}
		enc := expfmt.NewEncoder(buf, textFormat)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				h.logger.Error("encoding metric family", "family", mf.GetName(), "err", err)
			}
		}
	}
	for _, a := range h.appenders {
		buf.b = a.AppendText(buf.b)
	}
	gz := h.gzip && acceptsGzip(r)
	steady := h.steadyTexts(sc, gz)

	header := w.Header()
	header.Set("Content-Type", string(textFormat))
	if !gz {
		n := len(buf.b)
		for _, st := range steady {
			n += len(st.text)
		}
		header.Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(buf.b)
		for _, st := range steady {
			_, _ = w.Write(st.text)
		}
		return
	}
	// The body is compressed whole before it is sent, with its length:
	// one write instead of a chunk and a system call for every few KiB
	// the compressor hands over.
	sc.compressed = appendGzip(sc.compressed[:0], &sc.deflate, buf.b, steady)
	header.Set("Content-Encoding", "gzip")
	header.Add("Vary", "Accept-Encoding")
	header.Set("Content-Length", strconv.Itoa(len(sc.compressed)))
	_, _ = w.Write(sc.compressed)
}

// steadyTexts returns the appenders' steady families, written again where
// the appender's version moved on since the last scrape, and compressed
// when gz is set and they are not yet. Appenders without any are left out.
func (h *handler) steadyTexts(sc *scratch, gz bool) []*steadyText {
	h.steadyMu.Lock()
	defer h.steadyMu.Unlock()
	out := make([]*steadyText, 0, len(h.appenders))
	for i, a := range h.appenders {
		st := h.steady[i]
		if st == nil || st.version != a.SteadyVersion() {
			st = &steadyText{}
			st.text, st.version = a.AppendSteadyText(nil)
			st.crc = crc32.ChecksumIEEE(st.text)
			h.steady[i] = st
		}
		if len(st.text) == 0 {
			continue
		}
		if gz && st.deflate == nil {
			// A new entry rather than a change to st: an earlier scrape
			// may still be sending st.
			st = &steadyText{version: st.version, text: st.text, deflate: sc.deflate.Append(nil, st.text), crc: st.crc}
			h.steady[i] = st
		}
		out = append(out, st)
	}
	return out
}

// sliceWriter collects the exposition in one reusable slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// AppendHelpType writes a family's HELP and TYPE lines.
func AppendHelpType(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// AppendSample writes one sample with a single label.
func AppendSample(b []byte, name, label, value string, v float64) []byte {
	b = AppendSeries(b, name, label, value)
	b = AppendFloat(b, v)
	return append(b, '\n')
}

// AppendSeries writes a series with a single label up to its value,
// `name{label="value"} `: the value and the newline are the caller's.
func AppendSeries(b []byte, name, label, value string) []byte {
	b = appendSeriesStart(b, name, label)
	b = appendEscaped(b, value, true)
	return append(b, `"} `...)
}

// AppendEscapedSeries is AppendSeries for a label value escaped already by
// EscapeLabelValue: for values written on every scrape, escaped once.
func AppendEscapedSeries(b []byte, name, label, escaped string) []byte {
	b = appendSeriesStart(b, name, label)
	b = append(b, escaped...)
	return append(b, `"} `...)
}

func appendSeriesStart(b []byte, name, label string) []byte {
	b = append(b, name...)
	b = append(b, '{')
	b = append(b, label...)
	return append(b, `="`...)
}

// EscapeLabelValue returns s escaped as a label value of the text format:
// s itself, not a copy, when it has nothing to escape (any node name).
func EscapeLabelValue(s string) string {
	if !needsEscaping(s, true) {
		return s
	}
	return string(appendEscaped(nil, s, true))
}

// AppendSeconds writes ns nanoseconds as decimal seconds, exactly
// ("1764554526.123456", "40"): integer formatting, several times cheaper
// than a float's shortest form, for the thousands of timestamps and
// durations of a scrape. A parser reads the nearest float64, as close as
// float64(ns)/1e9 is.
func AppendSeconds(b []byte, ns int64) []byte {
	u := uint64(ns)
	if ns < 0 {
		b = append(b, '-')
		u = -u // the magnitude, math.MinInt64 included
	}
	b = strconv.AppendUint(b, u/1e9, 10)
	frac := u % 1e9
	if frac == 0 {
		return b
	}
	var digits [10]byte
	digits[0] = '.'
	for i := 9; i > 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	return append(b, digits[:n]...)
}

// AppendFloat writes v as the text format does.
func AppendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendEscaped escapes backslash and newline, and double quotes in label
// values, as the text format requires.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !needsEscaping(s, quote) {
		return append(b, s...) // node names and help texts: nothing to escape
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// needsEscaping is appendEscaped's test, a plain loop: strings.ContainsAny
// builds its set on every call, a tenth of a scrape's formatting.
func needsEscaping(s string, quote bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '\n' || c == '"' && quote {
			return true
		}
	}
	return false
}
