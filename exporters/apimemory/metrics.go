package apimemory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	residentMemoryMetric = "process_resident_memory_bytes"
	startTimeMetric      = "process_start_time_seconds"
	// maxSelectedBytes bounds what is kept of a response: the two families
	// take a few hundred bytes, so more means the endpoint is not sane.
	maxSelectedBytes = 64 << 10
)

var errTooLarge = errors.New("response too large")

// processMetrics is what the exporter takes from an API server's /metrics.
type processMetrics struct {
	residentBytes float64
	startTime     float64 // 0: not exposed
}

// parseProcessMetrics reads a Prometheus text exposition and returns the
// process_* values. A kube-apiserver exposes megabytes of metrics, so only
// the lines of the two families are handed to the parser: scrapes stay
// cheap, and garbage elsewhere in the output does not hide them.
func parseProcessMetrics(r io.Reader) (processMetrics, error) {
	selected, err := selectFamilies(r, residentMemoryMetric, startTimeMetric)
	if err != nil {
		return processMetrics{}, err
	}
	families, err := parseText(selected)
	if err != nil {
		return processMetrics{}, err
	}
	return processMetricsFrom(families)
}

// parseText runs the text parser, which panics on some malformed input
// (for one, a line "{}" in prometheus/common v0.67.5): that input comes
// from outside, so the panic becomes an error.
func parseText(b []byte) (families map[string]*dto.MetricFamily, err error) {
	defer func() {
		if p := recover(); p != nil {
			families, err = nil, fmt.Errorf("text format parser failed: %v", p)
		}
	}()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(b))
}

func processMetricsFrom(families map[string]*dto.MetricFamily) (processMetrics, error) {
	rss, ok, err := singleValue(families[residentMemoryMetric])
	if err != nil {
		return processMetrics{}, err
	}
	if !ok {
		return processMetrics{}, fmt.Errorf("no %s in the response", residentMemoryMetric)
	}
	if rss < 0 || math.IsInf(rss, 0) {
		return processMetrics{}, fmt.Errorf("%s %v is not a byte count", residentMemoryMetric, rss)
	}
	pm := processMetrics{residentBytes: rss}
	start, ok, err := singleValue(families[startTimeMetric])
	if err != nil {
		return processMetrics{}, err
	}
	if ok && start > 0 && !math.IsInf(start, 0) {
		pm.startTime = start
	}
	return pm, nil
}

// singleValue returns the value of the first sample of a gauge or untyped
// family (untyped: a response without TYPE lines). NaN counts as absent.
func singleValue(mf *dto.MetricFamily) (float64, bool, error) {
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, false, nil
	}
	m := mf.GetMetric()[0]
	var v float64
	switch mf.GetType() {
	case dto.MetricType_GAUGE:
		v = m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		v = m.GetUntyped().GetValue()
	default:
		return 0, false, fmt.Errorf("%s has type %s, want gauge", mf.GetName(), mf.GetType())
	}
	if math.IsNaN(v) {
		return 0, false, nil
	}
	return v, true, nil
}

// selectFamilies copies from r the lines that belong to the named families:
// their samples and their HELP and TYPE comments.
func selectFamilies(r io.Reader, names ...string) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out bytes.Buffer
	keep, atLineStart := false, true
	for {
		chunk, err := br.ReadSlice('\n')
		if atLineStart {
			keep = lineBelongs(chunk, names)
		}
		if keep {
			if out.Len()+len(chunk) > maxSelectedBytes {
				return nil, fmt.Errorf("%w: more than %d bytes of %v lines", errTooLarge, maxSelectedBytes, names)
			}
			out.Write(chunk)
		}
		// A line longer than the buffer comes in several chunks; only the
		// first one starts a line.
		atLineStart = err == nil
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			if keep && len(chunk) > 0 {
				out.WriteByte('\n')
			}
			return out.Bytes(), nil
		default:
			return nil, err
		}
	}
}

// lineBelongs reports whether an exposition line is a sample of, or a HELP
// or TYPE comment about, one of names, written plainly (name{...} value) or
// in the quoted form of UTF-8 names ({"name",...} value). It runs on every
// line of megabytes, so it does not allocate.
func lineBelongs(line []byte, names []string) bool {
	line = trimBlanks(line)
	if rest, ok := bytes.CutPrefix(line, []byte("#")); ok {
		keyword, rest := nextToken(trimBlanks(rest))
		if string(keyword) != "HELP" && string(keyword) != "TYPE" {
			return false
		}
		name, _ := nextToken(trimBlanks(rest))
		name = bytes.TrimPrefix(bytes.TrimSuffix(name, []byte(`"`)), []byte(`"`))
		for _, n := range names {
			if string(name) == n { // compared, not converted: no allocation
				return true
			}
		}
		return false
	}
	quoted := false
	if rest, ok := bytes.CutPrefix(line, []byte("{")); ok {
		line, quoted = trimBlanks(rest), true
	}
	if quoted {
		var ok bool
		if line, ok = bytes.CutPrefix(line, []byte(`"`)); !ok {
			return false
		}
	}
	for _, n := range names {
		rest, ok := bytes.CutPrefix(line, []byte(n))
		if ok && quoted {
			rest, ok = bytes.CutPrefix(rest, []byte(`"`))
		}
		if ok && len(rest) > 0 && strings.IndexByte(" \t{},\n", rest[0]) >= 0 {
			return true
		}
	}
	return false
}

func trimBlanks(b []byte) []byte { return bytes.TrimLeft(b, " \t") }

// nextToken splits b at the first blank, tab or newline.
func nextToken(b []byte) (token, rest []byte) {
	i := bytes.IndexAny(b, " \t\n")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}
