package gateway

import (
	"bytes"
	"time"
)

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
	if !ok || !r.setStatus(statusRaw) {
		return false
	}
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
