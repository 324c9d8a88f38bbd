package gateway

import (
	"math"
	"time"
)

// NginxJSONLogFormat is the nginx log_format the nginx-json format reads;
// users paste it into the http block of nginx.conf and log with
// `access_log /var/log/nginx/access.log cascade_json;`. Keys it does not
// read are ignored, so more may be added.
const NginxJSONLogFormat = `log_format cascade_json escape=json '{'
    '"time":"$time_iso8601","msec":"$msec","remote_addr":"$remote_addr",'
    '"method":"$request_method","uri":"$request_uri","status":"$status",'
    '"request_time":"$request_time","upstream_status":"$upstream_status",'
    '"upstream_response_time":"$upstream_response_time",'
    '"bytes_sent":"$bytes_sent","user_agent":"$http_user_agent"}';`

// nginxJSONParser reads lines written with NginxJSONLogFormat. Unknown
// keys are ignored, so users may log more fields.
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
	if !ok || !r.setStatus(statusRaw) {
		return false
	}
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

// hasStatus504 reports whether a list of upstream statuses ("502, 504",
// "504 : 200" after internal redirects) holds a 504.
func hasStatus504(b []byte) bool { return hasToken(b, ",:", "504") }
