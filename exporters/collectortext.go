package exporters

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// CollectorText writes what prometheus.Collectors collect straight as
// text, as a Registry's Gather and the text encoder would, for the
// collectors the exporters serve themselves (the exporter Set, build info).
//
// A Registry allocates two channels of a thousand metrics (32 KB) and a
// protobuf family per family on every Gather. At a scrape every few
// seconds that garbage was a quarter of all the exporter allocated, so a
// quarter of its garbage collections started during a scrape, and a scrape
// that runs beside a collection on the exporter's one processor takes
// twice as long: half of the slowest scrapes at 1,000 nodes. This keeps
// its buffers from one scrape to the next.
//
// The families are known at construction, from the collectors' Describe:
// a metric of a descriptor not described there is left out and logged, as
// a Registry would refuse it. The consistency checks a Registry makes on
// every Gather (duplicate series, label names) are the tests' to make.
type CollectorText struct {
	collectors []prometheus.Collector
	byDesc     map[*prometheus.Desc]*familyText
	families   []*familyText // in the order described
	logger     *slog.Logger

	mu     sync.Mutex // one scrape at a time writes the families' lines
	metric dto.Metric
}

type familyText struct {
	name, help string
	typ        string // from the scrape's first metric
	lines      []byte // the scrape's samples
}

// descString is how a Desc prints itself (client_golang's Desc.String):
// the one place its name and help can be read.
var descString = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"),`)

// NewCollectorText returns the text of collectors. It fails when a
// descriptor is invalid or cannot be read.
func NewCollectorText(logger *slog.Logger, collectors ...prometheus.Collector) (*CollectorText, error) {
	t := &CollectorText{collectors: collectors, byDesc: map[*prometheus.Desc]*familyText{}, logger: logger}
	byName := map[string]*familyText{}
	descs := make(chan *prometheus.Desc)
	go func() {
		for _, c := range collectors {
			c.Describe(descs)
		}
		close(descs)
	}()
	var errs []error
	for d := range descs {
		name, help, err := readDesc(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := byName[name]
		if f == nil {
			f = &familyText{name: name, help: help}
			byName[name] = f
			t.families = append(t.families, f)
		}
		t.byDesc[d] = f
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func readDesc(d *prometheus.Desc) (name, help string, err error) {
	m := descString.FindStringSubmatch(d.String())
	if m == nil {
		return "", "", fmt.Errorf("cannot read the descriptor %s", d)
	}
	if name, err = strconv.Unquote(m[1]); err == nil {
		help, err = strconv.Unquote(m[2])
	}
	if err != nil {
		return "", "", fmt.Errorf("cannot read the descriptor %s: %w", d, err)
	}
	if !model.IsValidLegacyMetricName(name) {
		return "", "", fmt.Errorf("invalid metric name in the descriptor %s", d)
	}
	return name, help, nil
}

// AppendText implements TextAppender: each family with samples, its HELP
// and TYPE lines, then its samples in the order collected.
func (t *CollectorText) AppendText(b []byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.families {
		f.lines, f.typ = f.lines[:0], ""
	}
	ch := make(chan prometheus.Metric, 16)
	go func() {
		for _, c := range t.collectors {
			c.Collect(ch)
		}
		close(ch)
	}()
	for m := range ch {
		f := t.byDesc[m.Desc()]
		if f == nil {
			t.logger.Error("a collector sent a metric it did not describe; left out", "desc", m.Desc().String())
			continue
		}
		t.metric.Reset()
		if err := m.Write(&t.metric); err != nil {
			t.logger.Error("writing a metric", "family", f.name, "err", err)
			continue
		}
		f.appendMetric(&t.metric)
	}
	for _, f := range t.families {
		if len(f.lines) > 0 {
			b = AppendHelpType(b, f.name, f.help, f.typ)
			b = append(b, f.lines...)
		}
	}
	return b
}

// AppendSteadyText implements TextAppender: nothing is kept.
func (t *CollectorText) AppendSteadyText(b []byte) ([]byte, uint64) { return b, 0 }

// SteadyVersion implements TextAppender.
func (t *CollectorText) SteadyVersion() uint64 { return 0 }

// appendMetric writes m's samples as the text format has them.
func (f *familyText) appendMetric(m *dto.Metric) {
	typ := "untyped"
	switch {
	case m.Gauge != nil:
		typ = "gauge"
		f.sample("", m, "", 0, m.Gauge.GetValue())
	case m.Counter != nil:
		typ = "counter"
		f.sample("", m, "", 0, m.Counter.GetValue())
	case m.Histogram != nil:
		typ = "histogram"
		h := m.Histogram
		infSeen := false
		for _, bucket := range h.Bucket {
			ub := bucket.GetUpperBound()
			infSeen = infSeen || math.IsInf(ub, 1)
			f.sample("_bucket", m, "le", ub, float64(bucket.GetCumulativeCount()))
		}
		if !infSeen {
			f.sample("_bucket", m, "le", math.Inf(1), float64(h.GetSampleCount()))
		}
		f.sample("_sum", m, "", 0, h.GetSampleSum())
		f.sample("_count", m, "", 0, float64(h.GetSampleCount()))
	case m.Summary != nil:
		typ = "summary"
		s := m.Summary
		for _, q := range s.Quantile {
			f.sample("", m, "quantile", q.GetQuantile(), q.GetValue())
		}
		f.sample("_sum", m, "", 0, s.GetSampleSum())
		f.sample("_count", m, "", 0, float64(s.GetSampleCount()))
	default:
		f.sample("", m, "", 0, m.Untyped.GetValue())
	}
	if f.typ == "" {
		f.typ = typ
	}
}

// sample writes one line: the family's name with suffix, m's labels and,
// when extra is set, one more label with a number as its value (le,
// quantile), then v and m's timestamp if it has one.
func (f *familyText) sample(suffix string, m *dto.Metric, extra string, extraValue, v float64) {
	b := append(f.lines, f.name...)
	b = append(b, suffix...)
	if len(m.Label) > 0 || extra != "" {
		b = append(b, '{')
		for i, l := range m.Label {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l.GetName()...)
			b = append(b, `="`...)
			b = appendEscaped(b, l.GetValue(), true)
			b = append(b, '"')
		}
		if extra != "" {
			if len(m.Label) > 0 {
				b = append(b, ',')
			}
			b = append(b, extra...)
			b = append(b, `="`...)
			b = AppendFloat(b, extraValue)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = AppendFloat(b, v)
	if m.TimestampMs != nil {
		b = append(b, ' ')
		b = strconv.AppendInt(b, m.GetTimestampMs(), 10)
	}
	f.lines = append(b, '\n')
}
