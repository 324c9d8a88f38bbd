package gateway

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"
)

// record is what a parser takes from one access log line. Byte slices point
// into the line or into the parser's scratch buffers and are valid until the
// parser's next call.
type record struct {
	method    []byte
	uri       []byte // path and query as requested
	status    int
	userAgent []byte
	// duration is the request's latency in seconds, when the line has one.
	duration    float64
	hasDuration bool
	// upstreamTimeout is the format's own upstream-timeout marker: nginx's
	// $upstream_status 504, Envoy's response flags UT or UMSDR.
	upstreamTimeout bool
	// rawTime is the line's timestamp in the format's own notation, parsed
	// only when the line is forwarded to Loki.
	rawTime []byte
}

func (r *record) reset() { *r = record{} }

// setStatus reads the record's HTTP status; false when raw is not one.
func (r *record) setStatus(raw []byte) (ok bool) {
	r.status, ok = parseStatus(raw)
	return ok
}

// lineParser turns one line (no newline, valid UTF-8) into a record. It
// returns false for a line it cannot read. Implementations keep scratch
// buffers, so each goroutine needs its own.
type lineParser interface {
	parse(line []byte, r *record) bool
	// timeOf parses rawTime; ok is false when it cannot.
	timeOf(raw []byte) (time.Time, bool)
}

func newParser(f Format) lineParser {
	switch f {
	case FormatNginxJSON:
		return &nginxJSONParser{}
	case FormatEnvoyJSON:
		return &envoyJSONParser{}
	case FormatCombined:
		return &combinedParser{}
	}
	panic("gateway: unknown format " + string(f))
}

// b2s views b as a string without copying, for parsers in the standard
// library; the result must not outlive b.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseStatus reads an HTTP status: three digits, 100 to 599, or 0 (Envoy's
// "no response was sent").
func parseStatus(b []byte) (int, bool) {
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	if len(b) != 3 || !isDigit(b[0]) || !isDigit(b[1]) || !isDigit(b[2]) {
		return 0, false
	}
	v := int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0')
	return v, v >= 100 && v <= 599
}

// hasToken reports whether one of the tokens of list, split at any byte of
// seps and trimmed of spaces, is one of want.
func hasToken(list []byte, seps string, want ...string) bool {
	for len(list) > 0 {
		tok := list
		if i := bytes.IndexAny(list, seps); i >= 0 {
			tok, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if slices.Contains(want, string(bytes.TrimSpace(tok))) {
			return true
		}
	}
	return false
}

// parseSeconds reads a non-negative decimal like nginx's $request_time
// ("0.004"). The common shape is read by hand; anything else goes to
// strconv. "-" and "" mean no value.
func parseSeconds(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 32 {
		return 0, false
	}
	var intPart uint64
	i := 0
	for ; i < len(b) && isDigit(b[i]); i++ {
		intPart = intPart*10 + uint64(b[i]-'0')
	}
	if i == 0 || i > 15 {
		return parseFloatSlow(b)
	}
	if i == len(b) {
		return float64(intPart), true
	}
	if b[i] != '.' {
		return parseFloatSlow(b)
	}
	i++
	var frac uint64
	scale := 1.0
	start := i
	for ; i < len(b) && isDigit(b[i]); i++ {
		frac = frac*10 + uint64(b[i]-'0')
		scale *= 10
	}
	if i != len(b) || i == start || i-start > 9 {
		return parseFloatSlow(b)
	}
	return float64(intPart) + float64(frac)/scale, true
}

func parseFloatSlow(b []byte) (float64, bool) {
	v, err := strconv.ParseFloat(b2s(b), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// jsonObject walks the keys of a one-line JSON object, unescaping keys
// that need it: the part the JSON parsers share.
type jsonObject struct {
	scan  jsonScanner
	field jsonField
	key   []byte // scratch for an escaped key
}

// each calls fn with every key and its field, in order; false when the line
// is not one well-formed JSON object.
func (o *jsonObject) each(line []byte, fn func(key []byte, f *jsonField)) bool {
	o.scan.reset(line)
	if !o.scan.begin() {
		return false
	}
	for first := true; ; first = false {
		more, ok := o.scan.next(&o.field, first)
		if !more {
			return ok
		}
		key := o.field.key
		if o.field.keyEscaped {
			o.key = unescapeJSON(o.key[:0], key)
			key = o.key
		}
		fn(key, &o.field)
	}
}

// stringValue returns a string field's decoded value (unescaping into
// *scratch when needed), or nil when the value is not a string.
func stringValue(f *jsonField, scratch *[]byte) []byte {
	if f.kind != jsonString {
		return nil
	}
	if !f.escaped {
		return f.raw
	}
	*scratch = unescapeJSON((*scratch)[:0], f.raw)
	return *scratch
}

// textValue returns a string's decoded value or a number's text; nil for
// anything else, so that a later key of another type overrides an earlier
// one as in encoding/json.
func textValue(f *jsonField, scratch *[]byte) []byte {
	if f.kind == jsonNumber {
		return f.raw
	}
	return stringValue(f, scratch)
}
