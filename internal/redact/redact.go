// Package redact keeps secrets out of what Cascade logs and returns: the
// password of every URL in a text is masked, as url.URL.Redacted masks it.
// It works on any text, a URL alone or an error message quoting one, and on
// URLs that do not parse, which are the ones most often quoted in errors.
package redact

import "strings"

// Mask replaces a password.
const Mask = "xxxxx"

// URL returns s with the password of each URL in it (scheme://...)
// replaced by Mask:
// "http://user:secret@host/metrics" becomes "http://user:xxxxx@host/metrics".
// A user name alone is kept, as url.URL.Redacted keeps it.
//
// A URL runs to the next blank, and its user information to the last "@"
// before its query or fragment, so a password holding an unescaped "/" or
// "@" is masked whole too. It errs on the side of masking: in a text with
// no blank after a URL, an "@" further on masks more than the password.
func URL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		start := i + len("://")
		end := strings.IndexAny(rest[start:], " \t\r\n")
		if end < 0 {
			end = len(rest) - start
		}
		token := rest[start : start+end]
		head := token
		if q := strings.IndexAny(head, "?#"); q >= 0 {
			head = head[:q]
		}
		at := strings.LastIndexByte(head, '@')
		colon := -1
		if at >= 0 {
			colon = strings.IndexByte(head[:at], ':')
		}
		if colon < 0 {
			b.WriteString(rest[:start+end])
		} else {
			b.WriteString(rest[:start+colon+1])
			b.WriteString(Mask)
			b.WriteString(token[at:])
		}
		rest = rest[start+end:]
	}
	b.WriteString(rest)
	return b.String()
}
