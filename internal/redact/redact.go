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
// The URLs that matter most are the ones that do not parse, quoted in
// errors, and a password typed into a flag may hold a "/", "#", "@" or
// blank that should have been escaped. So the password is taken to run from
// the first ":" after "://" to the last "@" before the next "://" or the end
// of s. This errs on the side of masking: in a text with an "@" after a URL
// (an address in its query, a message quoting one), more than the password
// is masked.
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
		end := strings.Index(rest[start:], "://")
		if end < 0 {
			end = len(rest) - start
		}
		region := rest[start : start+end]
		at := strings.LastIndexByte(region, '@')
		colon := -1
		if at >= 0 {
			colon = strings.IndexByte(region[:at], ':')
		}
		if colon < 0 {
			b.WriteString(rest[:start+end])
		} else {
			b.WriteString(rest[:start+colon+1])
			b.WriteString(Mask)
			b.WriteString(region[at:])
		}
		rest = rest[start+end:]
	}
	b.WriteString(rest)
	return b.String()
}
