package gateway

import (
	"bytes"
	"math"
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

// hasStatus504 reports whether a list of upstream statuses ("502, 504",
// "504 : 200" after internal redirects) holds a 504.
func hasStatus504(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexAny(b, ",:")
		tok := b
		if i >= 0 {
			tok, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if string(bytes.TrimSpace(tok)) == "504" {
			return true
		}
	}
	return false
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

// nginxJSONParser reads lines written with NginxJSONLogFormat (see
// config.go). Unknown keys are ignored, so users may log more fields.
type nginxJSONParser struct {
	obj jsonObject
	// scratch for escaped strings, one per field since all stay in use
	method, uri, ua, status, requestTime, upstreamStatus, msec []byte
}

func (p *nginxJSONParser) parse(line []byte, r *record) bool {
	var statusRaw, requestTime, upstreamStatus []byte
	ok := p.obj.each(line, func(key []byte, f *jsonField) {
		switch string(key) {
		case "method":
			r.method = stringValue(f, &p.method)
		case "uri":
			r.uri = stringValue(f, &p.uri)
		case "status":
			statusRaw = textValue(f, &p.status)
		case "request_time":
			requestTime = textValue(f, &p.requestTime)
		case "upstream_status":
			upstreamStatus = textValue(f, &p.upstreamStatus)
		case "user_agent":
			r.userAgent = stringValue(f, &p.ua)
		case "msec":
			r.rawTime = textValue(f, &p.msec)
		}
	})
	if !ok {
		return false
	}
	status, ok := parseStatus(statusRaw)
	if !ok {
		return false
	}
	r.status = status
	r.duration, r.hasDuration = parseSeconds(requestTime)
	r.upstreamTimeout = hasStatus504(upstreamStatus)
	return true
}

// timeOf reads $msec, seconds since the epoch with millisecond resolution.
func (p *nginxJSONParser) timeOf(raw []byte) (time.Time, bool) {
	v, ok := parseSeconds(raw)
	if !ok || v > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(math.Round(frac*1e3))*1e6), true
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

// envoyJSONParser reads Envoy's JSON access log with the key set of
// EnvoyJSONFormat (config.go); ":method", ":path" and "user-agent" are taken
// as aliases. duration is in milliseconds; response_flags such as "UT,URX".
type envoyJSONParser struct {
	obj jsonObject
	// scratch for escaped strings, one per field since all stay in use
	method, uri, ua, status, duration, flags, startTime []byte
}

func (p *envoyJSONParser) parse(line []byte, r *record) bool {
	var statusRaw, durationRaw, flags []byte
	ok := p.obj.each(line, func(key []byte, f *jsonField) {
		switch string(key) {
		case "method", ":method":
			r.method = stringValue(f, &p.method)
		case "path", ":path":
			r.uri = stringValue(f, &p.uri)
		case "response_code":
			statusRaw = textValue(f, &p.status)
		case "duration":
			durationRaw = textValue(f, &p.duration)
		case "response_flags":
			flags = textValue(f, &p.flags)
		case "user_agent", "user-agent":
			r.userAgent = stringValue(f, &p.ua)
		case "start_time":
			r.rawTime = textValue(f, &p.startTime)
		}
	})
	if !ok {
		return false
	}
	status, ok := parseStatus(statusRaw)
	if !ok {
		return false
	}
	r.status = status
	if ms, ok := parseSeconds(durationRaw); ok {
		r.duration, r.hasDuration = ms/1e3, true
	}
	r.upstreamTimeout = hasEnvoyTimeoutFlag(flags)
	return true
}

// hasEnvoyTimeoutFlag reports UT (upstream request timeout) or UMSDR
// (upstream max stream duration reached) in a response flags list.
func hasEnvoyTimeoutFlag(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, ',')
		tok := b
		if i >= 0 {
			tok, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch string(bytes.TrimSpace(tok)) {
		case "UT", "UMSDR":
			return true
		}
	}
	return false
}

// timeOf reads %START_TIME%'s default RFC 3339 form.
func (p *envoyJSONParser) timeOf(raw []byte) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, b2s(raw))
	return t, err == nil
}

// combinedParser reads the combined log format of nginx and Apache:
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" [$request_time]
//
// An optional field after the user agent is the request time in seconds
// (nginx's $request_time); anything after it is ignored.
type combinedParser struct{}

func (p *combinedParser) parse(line []byte, r *record) bool {
	rest := line
	// remote address, ident, user: three space-separated tokens.
	for range 3 {
		i := bytes.IndexByte(rest, ' ')
		if i <= 0 {
			return false
		}
		rest = rest[i+1:]
	}
	if len(rest) == 0 || rest[0] != '[' {
		return false
	}
	end := bytes.IndexByte(rest, ']')
	if end < 0 {
		return false
	}
	r.rawTime = rest[1:end]
	rest = rest[end+1:]
	request, rest, ok := quotedField(rest)
	if !ok {
		return false
	}
	statusRaw, rest, ok := tokenField(rest)
	if !ok {
		return false
	}
	status, ok := parseStatus(statusRaw)
	if !ok {
		return false
	}
	r.status = status
	if _, rest, ok = tokenField(rest); !ok { // body bytes
		return false
	}
	if _, rest, ok = quotedField(rest); !ok { // referer
		return false
	}
	ua, rest, ok := quotedField(rest)
	if !ok {
		return false
	}
	r.userAgent = ua
	if tok, _, ok := tokenField(rest); ok {
		r.duration, r.hasDuration = parseSeconds(tok)
	}
	// "METHOD URI PROTOCOL"; a request line that is not (a TLS handshake
	// sent to a plain port, "-") still is a request, counted with method
	// and route "other".
	if sp := bytes.IndexByte(request, ' '); sp > 0 {
		r.method = request[:sp]
		uri := request[sp+1:]
		if sp2 := bytes.LastIndexByte(uri, ' '); sp2 >= 0 {
			uri = uri[:sp2]
		}
		r.uri = uri
	}
	return true
}

// quotedField reads ` "..."` (one space, then a quoted string in which a
// backslash escapes the next byte) and returns its content and the rest.
func quotedField(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 3 || b[0] != ' ' || b[1] != '"' {
		return nil, nil, false
	}
	for i := 2; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[2:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// tokenField reads ` token` up to the next space or the end.
func tokenField(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != ' ' {
		return nil, nil, false
	}
	b = b[1:]
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil, true
	}
	if i == 0 {
		return nil, nil, false
	}
	return b[:i], b[i:], true
}

// timeOf reads $time_local, "10/Oct/2000:13:55:36 -0700".
func (p *combinedParser) timeOf(raw []byte) (time.Time, bool) {
	t, err := time.Parse("02/Jan/2006:15:04:05 -0700", b2s(raw))
	return t, err == nil
}
