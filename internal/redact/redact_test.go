package redact

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"http://user:PASS@host/metrics", "http://user:xxxxx@host/metrics"},
		{"https://user:PASS@host:6443", "https://user:xxxxx@host:6443"},
		{"https://user@host/x", "https://user@host/x"},
		{"https://host:6443/metrics", "https://host:6443/metrics"},
		{"no url at all", "no url at all"},
		{"", ""},
		// A flag value, an error quoting two URLs, a URL that does not parse.
		{"r=http://user:PASS@host/metrics", "r=http://user:xxxxx@host/metrics"},
		{`endpoint "r=http://a:PASS@h/m": GET http://b:PASS@h/m: 401`, `endpoint "r=http://a:xxxxx@h/m": GET http://b:xxxxx@h/m: 401`},
		{"http://user:PA/SS@host:bad/metrics", "http://user:xxxxx@host:bad/metrics"},
		{"http://user:P@SS@host/", "http://user:xxxxx@host/"},
		{"http://user:PASS@host/?next=a@b#c", "http://user:xxxxx@b#c"}, // masks more, never less
		{"http://user:PA#SS@host/", "http://user:xxxxx@host/"},
		{"http://host/?email=a@b", "http://host/?email=a@b"},
		{"http://user:%50ASS@host/", "http://user:xxxxx@host/"},
		{"://", "://"},
		{"x://@", "x://@"},
		{"x://:@", "x://:xxxxx@"},
		{"http://user:PA SS@host/", "http://user:xxxxx@host/"},
		{`endpoint "00:// :PASS@0": want [replica=]https://host:port/metrics`, `endpoint "00:// :xxxxx@0": want [replica=]https://host:port/metrics`},
		{`Get "http://host:6443/metrics": dial tcp 10.0.0.1:6443: connect: connection refused`, `Get "http://host:6443/metrics": dial tcp 10.0.0.1:6443: connect: connection refused`},
	} {
		require.Equal(t, c.want, URL(c.in), "URL(%q)", c.in)
	}
}

// FuzzURL: whatever the text, the password of an absolute URL that net/url
// parses does not survive, and text without a URL is left alone.
func FuzzURL(f *testing.F) {
	for _, s := range []string{"http://user:PASS@host/metrics", "x", "a://b:c@d e://f:g@h", "http://u:p@h?q=1@2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := URL(s)
		if !strings.Contains(s, "://") {
			require.Equal(t, s, out)
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || u.User == nil || strings.ContainsAny(s, " \t\r\n") {
			return
		}
		// The password masked (as written, when it is written unescaped);
		// the same text may stand elsewhere in s.
		if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Contains(s, pw) && !strings.Contains(u.Redacted(), pw) {
			require.Less(t, strings.Count(out, pw), strings.Count(s, pw), "URL(%q) = %q", s, out)
		}
	})
}
