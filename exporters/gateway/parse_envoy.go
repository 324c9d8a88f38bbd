package gateway

import (
	"time"
)

// EnvoyJSONFormat is the json_format of an Envoy file access log that the
// envoy-json format reads (in the access_log of the HTTP connection
// manager). ":method", ":path" and "user-agent" are accepted as key aliases;
// other keys are ignored.
const EnvoyJSONFormat = `json_format:
  start_time: "%START_TIME%"
  method: "%REQ(:METHOD)%"
  path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
  protocol: "%PROTOCOL%"
  response_code: "%RESPONSE_CODE%"
  response_flags: "%RESPONSE_FLAGS%"
  duration: "%DURATION%"
  upstream_host: "%UPSTREAM_HOST%"
  user_agent: "%REQ(USER-AGENT)%"`

// envoyJSONParser reads Envoy's JSON access log with the key set of
// EnvoyJSONFormat; ":method", ":path" and "user-agent" are taken
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
	if !ok || !r.setStatus(statusRaw) {
		return false
	}
	if ms, ok := parseSeconds(durationRaw); ok {
		r.duration, r.hasDuration = ms/1e3, true
	}
	r.upstreamTimeout = hasEnvoyTimeoutFlag(flags)
	return true
}

// hasEnvoyTimeoutFlag reports UT (upstream request timeout) or UMSDR
// (upstream max stream duration reached) in a response flags list.
func hasEnvoyTimeoutFlag(b []byte) bool { return hasToken(b, ",", "UT", "UMSDR") }

// timeOf reads %START_TIME%'s default RFC 3339 form.
func (p *envoyJSONParser) timeOf(raw []byte) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, b2s(raw))
	return t, err == nil
}
