package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// jsonPair is one top-level key of an object and its decoded value.
type jsonPair struct {
	key   string
	value any
}

// decodeObject decodes a top-level JSON object with encoding/json, keeping
// its keys in order (duplicates included), with numbers as json.Number.
func decodeObject(line []byte) ([]jsonPair, bool) {
	if !json.Valid(line) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var pairs []jsonPair
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		pairs = append(pairs, jsonPair{key: tok.(string), value: v})
	}
	return pairs, true
}

// lastValue is what the parsers keep of a key: the last occurrence among
// aliases, its text for strings and numbers, nil for other types.
func lastValue(pairs []jsonPair, keys ...string) ([]byte, bool) {
	var out []byte
	found := false
	for _, p := range pairs {
		for _, k := range keys {
			if p.key != k {
				continue
			}
			found = true
			switch v := p.value.(type) {
			case string:
				out = []byte(v)
			case json.Number:
				out = []byte(v.String())
			default:
				out = nil
			}
		}
	}
	return out, found
}

// lastString is like lastValue for keys the parsers read only as strings.
func lastString(pairs []jsonPair, keys ...string) []byte {
	var out []byte
	for _, p := range pairs {
		for _, k := range keys {
			if p.key == k {
				if s, ok := p.value.(string); ok {
					out = []byte(s)
				} else {
					out = nil
				}
			}
		}
	}
	return out
}

func nestingDepth(b []byte) int {
	return bytes.Count(b, []byte("{")) + bytes.Count(b, []byte("["))
}

// checkRecord holds for every record a parser accepts.
func checkRecord(t *testing.T, r *record) {
	t.Helper()
	require.True(t, r.status == 0 || r.status >= 100 && r.status <= 599, "status %d", r.status)
	if r.hasDuration {
		require.False(t, r.duration < 0 || math.IsNaN(r.duration) || math.IsInf(r.duration, 0), "duration %v", r.duration)
	}
}

// fuzzPipelines are reused across inputs (a fuzz worker runs them one at a
// time), so each input costs a line, not a registry.
var fuzzPipelines = map[Format]*pipeline{}

// checkPipeline runs a line through the whole pipeline and checks that the
// labels of every series it made stay in their bounded sets.
func checkPipeline(t *testing.T, format Format, line []byte) {
	t.Helper()
	p := fuzzPipelines[format]
	if p == nil {
		cfg := DefaultConfig()
		p = newPipeline(format, newMetrics(), newRouteTable(DefaultMaxRoutes), &cfg, nil)
		fuzzPipelines[format] = p
	}
	before := len(p.series)
	p.Line(line)
	if len(p.series) == before {
		return
	}
	for k := range p.series {
		requireBoundedRoute(t, p.routes.name(k.route))
		require.Less(t, int(k.method), len(methodNames))
		require.Less(t, k.client, numClasses)
		require.True(t, k.code == 0 || k.code >= 100 && k.code <= 599, "code %d", k.code)
	}
}

func seedLines(f *testing.F, name string) {
	for _, l := range testdataLines(f, name) {
		f.Add(l)
	}
}

// FuzzNginxJSON checks the nginx JSON parser against encoding/json: it
// accepts exactly the objects with a valid status, and reads the same
// method, URI and user agent.
func FuzzNginxJSON(f *testing.F) {
	seedLines(f, "nginx-json.log")
	f.Add([]byte(`{"status":"200","method":"G\u0045T","uri":"/api/v1/pods","uri":"/api/v1/nodes","status":200}`))
	f.Add([]byte(`{"\u0073tatus":"\u0032\u0030\u0030","user_agent":"\ud83d\ude00 \ud800x"}`))
	f.Add([]byte(`{"status":"200","x":[{"a":[1.5e10,-0,true,false,null]}]} `))
	f.Fuzz(func(t *testing.T, line []byte) {
		var p nginxJSONParser
		var r record
		ok := p.parse(line, &r)
		if ok {
			checkRecord(t, &r)
			require.True(t, json.Valid(line), "accepted invalid JSON %q", line)
		}
		checkPipeline(t, FormatNginxJSON, line)
		if !utf8.Valid(line) || nestingDepth(line) > maxJSONDepth {
			return // never reaches the parser / beyond the parser's depth bound
		}
		pairs, valid := decodeObject(line)
		if !valid {
			require.False(t, ok, "accepted %q, which encoding/json refuses", line)
			return
		}
		status, _ := lastValue(pairs, "status")
		_, statusOK := parseStatus(status)
		require.Equal(t, statusOK, ok, "accept %q", line)
		if !ok {
			return
		}
		require.Equal(t, lastString(pairs, "method"), nilIfEmpty(r.method))
		require.Equal(t, lastString(pairs, "uri"), nilIfEmpty(r.uri))
		require.Equal(t, lastString(pairs, "user_agent"), nilIfEmpty(r.userAgent))
		rt, _ := lastValue(pairs, "request_time")
		wantDur, wantHas := parseSeconds(rt)
		require.Equal(t, wantHas, r.hasDuration)
		require.Equal(t, wantDur, r.duration)
	})
}

// FuzzEnvoyJSON does the same for the Envoy parser, key aliases included.
func FuzzEnvoyJSON(f *testing.F) {
	seedLines(f, "envoy-json.log")
	f.Add([]byte(`{"response_code":504,":path":"/a","path":"/api/v1/pods",":method":"GET","response_flags":"UT","duration":"1e3"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var p envoyJSONParser
		var r record
		ok := p.parse(line, &r)
		if ok {
			checkRecord(t, &r)
			require.True(t, json.Valid(line), "accepted invalid JSON %q", line)
		}
		checkPipeline(t, FormatEnvoyJSON, line)
		if !utf8.Valid(line) || nestingDepth(line) > maxJSONDepth {
			return
		}
		pairs, valid := decodeObject(line)
		if !valid {
			require.False(t, ok, "accepted %q, which encoding/json refuses", line)
			return
		}
		status, _ := lastValue(pairs, "response_code")
		_, statusOK := parseStatus(status)
		require.Equal(t, statusOK, ok, "accept %q", line)
		if !ok {
			return
		}
		require.Equal(t, lastString(pairs, "method", ":method"), nilIfEmpty(r.method))
		require.Equal(t, lastString(pairs, "path", ":path"), nilIfEmpty(r.uri))
		require.Equal(t, lastString(pairs, "user_agent", "user-agent"), nilIfEmpty(r.userAgent))
		flags, _ := lastValue(pairs, "response_flags")
		require.Equal(t, hasEnvoyTimeoutFlag(flags), r.upstreamTimeout)
	})
}

func nilIfEmpty(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

// nginxEscape escapes a value the way nginx's default log escaping does.
func nginxEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, `\x%02X`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// FuzzCombined checks that the combined log parser never fails on any
// line, and that a line written the way nginx writes it reads back.
func FuzzCombined(f *testing.F) {
	for _, l := range testdataLines(f, "combined.log") {
		f.Add(l, "GET", "/api/v1/pods", 200, "kubelet/v1.37.2 (linux/amd64) kubernetes/abc123", "0.004")
	}
	f.Add([]byte(`- - - [x] "" 200 0 "" ""`), "PUT", `/a b"c\d`, 504, "a \"quoted\" agent", "")
	f.Fuzz(func(t *testing.T, line []byte, method, uri string, status int, ua, requestTime string) {
		var p combinedParser
		var r record
		if p.parse(line, &r) {
			checkRecord(t, &r)
		}
		checkPipeline(t, FormatCombined, line)

		// The round trip: methods are tokens, and the request time is one.
		if method == "" || strings.ContainsAny(method, " \"\\") || strings.ContainsAny(requestTime, " \n") ||
			!utf8.ValidString(method+uri+ua+requestTime) {
			return
		}
		built := fmt.Sprintf(`10.0.0.1 - - [14/Mar/2026:23:48:01 +0100] "%s %s HTTP/1.1" %d 123 "-" "%s"`,
			nginxEscape(method), nginxEscape(uri), status, nginxEscape(ua))
		if requestTime != "" {
			built += " " + nginxEscape(requestTime)
		}
		var rb record
		ok := p.parse([]byte(built), &rb)
		_, statusOK := parseStatus([]byte(fmt.Sprint(status)))
		require.Equal(t, statusOK, ok, "%q", built)
		if !ok {
			return
		}
		require.Equal(t, status, rb.status)
		require.Equal(t, nginxEscape(method), string(rb.method))
		require.Equal(t, nginxEscape(uri), string(rb.uri))
		require.Equal(t, nginxEscape(ua), string(rb.userAgent))
		wantDur, wantHas := parseSeconds([]byte(nginxEscape(requestTime)))
		require.Equal(t, wantHas, rb.hasDuration)
		require.Equal(t, wantDur, rb.duration)
	})
}

// FuzzRoute checks that any URI maps to a route made only of the bounded
// vocabulary, and that a route maps to itself: templates are fixed points.
func FuzzRoute(f *testing.F) {
	for _, name := range []string{"nginx-json.log", "envoy-json.log"} {
		for _, l := range testdataLines(f, name) {
			var rec record
			var p lineParser = &nginxJSONParser{}
			if name == "envoy-json.log" {
				p = &envoyJSONParser{}
			}
			if p.parse(l, &rec) {
				f.Add(string(rec.uri))
			}
		}
	}
	for _, s := range []string{
		"/api/v1/namespaces/a/pods/b/proxy/x/y/z/1/2/3/4/5/6",
		"/apis/x.io/v1/watch/namespaces/a/things/b/status?watch=0",
		"/api/v1/namespaces/a/status", "/openapi/v3/apis/apps/v1", "/healthz/etcd", "//", "/?watch=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		var m routeMapper
		route, watch := m.route([]byte(uri))
		r := string(route)
		requireBoundedRoute(t, r)
		if watch {
			require.Contains(t, r, "/watch/")
		}
		again, watchAgain := m.route([]byte(r))
		require.Equal(t, r, string(again), "route of the route of %q", uri)
		require.Equal(t, watch, watchAgain)
	})
}
