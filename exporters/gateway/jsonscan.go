package gateway

import (
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner walks one JSON object, key by key, without allocating and
// without reflection: access log lines are flat objects of a few known keys,
// and encoding/json would cost more than everything else on the hot path.
// It is strict (it accepts only what encoding/json accepts, checked by
// FuzzNginxJSON and FuzzEnvoyJSON) and bounded (nesting depth maxJSONDepth).
type jsonScanner struct {
	data []byte
	pos  int
}

// JSON value kinds the scanner reports.
const (
	jsonString byte = 's'
	jsonNumber byte = 'n'
	jsonTrue   byte = 't'
	jsonFalse  byte = 'f'
	jsonNull   byte = 'z'
	jsonNested byte = 'o' // object or array, skipped
)

const maxJSONDepth = 32

// jsonField is one key and value of the object. For strings, raw is the
// text between the quotes, still escaped when escaped is true.
type jsonField struct {
	key        []byte
	keyEscaped bool
	raw        []byte
	escaped    bool
	kind       byte
}

func (s *jsonScanner) reset(data []byte) {
	s.data = data
	s.pos = 0
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// begin consumes the opening brace.
func (s *jsonScanner) begin() bool {
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return false
	}
	s.pos++
	return true
}

// next reads the next field into f. It returns more=false at the closing
// brace (ok tells whether the whole input was a valid object) or on a syntax
// error (ok=false).
func (s *jsonScanner) next(f *jsonField, first bool) (more, ok bool) {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return false, false
	}
	if s.data[s.pos] == '}' {
		s.pos++
		s.skipSpace()
		return false, s.pos == len(s.data)
	}
	if !first {
		if s.data[s.pos] != ',' {
			return false, false
		}
		s.pos++
		s.skipSpace()
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return false, false
	}
	key, esc, good := s.scanString()
	if !good {
		return false, false
	}
	f.key, f.keyEscaped = key, esc
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return false, false
	}
	s.pos++
	s.skipSpace()
	if !s.scanValue(f, 0) {
		return false, false
	}
	return true, true
}

// scanString reads a string starting at the opening quote and returns its
// raw content.
func (s *jsonScanner) scanString() (raw []byte, escaped, ok bool) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			raw = s.data[start:s.pos]
			s.pos++
			return raw, escaped, true
		case c == '\\':
			escaped = true
			if s.pos+1 >= len(s.data) {
				return nil, false, false
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) || !isHex4(s.data[s.pos+2:s.pos+6]) {
					return nil, false, false
				}
				s.pos += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			s.pos++
		}
	}
	return nil, false, false
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *jsonScanner) scanValue(f *jsonField, depth int) bool {
	if s.pos >= len(s.data) {
		return false
	}
	f.escaped = false
	switch c := s.data[s.pos]; {
	case c == '"':
		raw, esc, ok := s.scanString()
		f.raw, f.escaped, f.kind = raw, esc, jsonString
		return ok
	case c == '-' || c >= '0' && c <= '9':
		start := s.pos
		if !s.scanNumber() {
			return false
		}
		f.raw, f.kind = s.data[start:s.pos], jsonNumber
		return true
	case c == 't':
		f.kind = jsonTrue
		return s.literal("true")
	case c == 'f':
		f.kind = jsonFalse
		return s.literal("false")
	case c == 'n':
		f.kind = jsonNull
		return s.literal("null")
	case c == '{' || c == '[':
		start := s.pos
		if !s.skipNested(depth + 1) {
			return false
		}
		f.raw, f.kind = s.data[start:s.pos], jsonNested
		return true
	}
	return false
}

func (s *jsonScanner) literal(lit string) bool {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

// scanNumber accepts the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScanner) scanNumber() bool {
	d := s.data
	if s.pos < len(d) && d[s.pos] == '-' {
		s.pos++
	}
	if s.pos >= len(d) {
		return false
	}
	switch {
	case d[s.pos] == '0':
		s.pos++
	case d[s.pos] >= '1' && d[s.pos] <= '9':
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	default:
		return false
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if s.pos >= len(d) || !isDigit(d[s.pos]) {
			return false
		}
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if s.pos >= len(d) || !isDigit(d[s.pos]) {
			return false
		}
		for s.pos < len(d) && isDigit(d[s.pos]) {
			s.pos++
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNested skips an object or array, checking its syntax.
func (s *jsonScanner) skipNested(depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	open := s.data[s.pos]
	s.pos++
	s.skipSpace()
	closing := byte('}')
	if open == '[' {
		closing = ']'
	}
	if s.pos < len(s.data) && s.data[s.pos] == closing {
		s.pos++
		return true
	}
	var f jsonField
	for {
		s.skipSpace()
		if open == '{' {
			if s.pos >= len(s.data) || s.data[s.pos] != '"' {
				return false
			}
			if _, _, ok := s.scanString(); !ok {
				return false
			}
			s.skipSpace()
			if s.pos >= len(s.data) || s.data[s.pos] != ':' {
				return false
			}
			s.pos++
			s.skipSpace()
		}
		if !s.scanValue(&f, depth) {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case closing:
			s.pos++
			return true
		default:
			return false
		}
	}
}

// unescapeJSON appends the decoded form of a raw JSON string to dst, the way
// encoding/json decodes it (a lone surrogate becomes U+FFFD). raw must have
// passed scanString.
func unescapeJSON(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(raw[i+2:]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, rune(hex4(raw[i+2:]))); dec != utf8.RuneError {
						dst = utf8.AppendRune(dst, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint16(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint16(c - 'a' + 10)
		default:
			v |= uint16(c - 'A' + 10)
		}
	}
	return v
}
