package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

// genVersion changes whenever the generator's output changes, so a cached
// log from an older generator is not reused.
const genVersion = "1"

// genSeed makes the log the same on every machine.
const genSeed = 20260314

const (
	fleetNodes = 5000
	uaKubelet  = "kubelet/v1.37.2 (linux/amd64) kubernetes/abc123"
	uaKCM      = "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc123/shared-informers"
	uaSched    = "kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc123/scheduler"
	uaKubectl  = "kubectl/v1.37.2 (linux/amd64) kubernetes/abc123"
	uaOperator = "argocd-application-controller/v2.14.0"
	uaProxy    = "kube-proxy/v1.37.2 (linux/amd64) kubernetes/abc123"
	uaBrowser  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)

var namespaces = []string{"default", "kube-system", "team-a", "team-b", "payments", "monitoring", "ingress", "batch-jobs"}

// request is one line's content before formatting.
type request struct {
	method, uri, ua string
	status          int
	upstream        string
	seconds         float64
}

// generator writes a day-in-the-life access log of a control plane's
// gateway for a 5,000-node fleet: mostly kubelets renewing leases every
// 10 s and patching node status, with GETs, LISTs and long WATCHes from
// kubelets, controllers, kubectl and others, and a share of errors,
// including bursts of 504s from an overloaded API server.
type generator struct {
	r   *rand.Rand
	now time.Time
	buf []byte
}

func newGenerator() *generator {
	return &generator{
		r:   rand.New(rand.NewPCG(genSeed, genSeed>>1)),
		now: time.Date(2026, 3, 14, 22, 0, 0, 0, time.UTC),
	}
}

func (g *generator) node() string { return "node-" + strconv.Itoa(10000+g.r.IntN(fleetNodes)) }
func (g *generator) ns() string   { return namespaces[g.r.IntN(len(namespaces))] }

// next draws one request. About 1 line in 40 falls into an "incident"
// period, where renewals and status updates fail with 504 after 10 s.
func (g *generator) next() request {
	incident := g.r.IntN(40) == 0
	p := g.r.IntN(1000)
	switch {
	case p < 520: // lease renewals, the bulk of any large fleet's traffic
		rq := request{method: "PUT", uri: "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + g.node() + "?timeout=10s",
			ua: uaKubelet, status: 200, seconds: 0.002 + g.r.ExpFloat64()*0.004}
		if incident {
			rq.status, rq.upstream, rq.seconds = 504, "504", 10+g.r.Float64()*0.01
		} else if g.r.IntN(200) == 0 {
			rq.status = 409
		}
		return rq
	case p < 700: // node status
		rq := request{method: "PATCH", uri: "/api/v1/nodes/" + g.node() + "/status?timeout=10s",
			ua: uaKubelet, status: 200, seconds: 0.005 + g.r.ExpFloat64()*0.01}
		if incident {
			rq.status, rq.upstream, rq.seconds = 504, "504", 10+g.r.Float64()*0.01
		}
		return rq
	case p < 800: // kubelet GETs of what its pods need
		res := []string{"configmaps", "secrets", "pods", "serviceaccounts"}[g.r.IntN(4)]
		status := 200
		if g.r.IntN(50) == 0 {
			status = 404
		}
		return request{method: "GET", uri: "/api/v1/namespaces/" + g.ns() + "/" + res + "/obj-" + strconv.Itoa(g.r.IntN(500)),
			ua: uaKubelet, status: status, seconds: 0.001 + g.r.ExpFloat64()*0.003}
	case p < 860: // GETs of nodes by controllers
		return request{method: "GET", uri: "/api/v1/nodes/" + g.node(), ua: uaKCM, status: 200, seconds: 0.002 + g.r.ExpFloat64()*0.004}
	case p < 900: // LISTs
		uris := []string{
			"/api/v1/pods?limit=500&resourceVersion=0",
			"/apis/apps/v1/namespaces/" + g.ns() + "/deployments?limit=500",
			"/api/v1/namespaces/" + g.ns() + "/pods?labelSelector=app%3Dweb",
			"/apis/discovery.k8s.io/v1/endpointslices?limit=500",
		}
		ua := []string{uaKCM, uaKubectl, uaOperator, uaSched}[g.r.IntN(4)]
		rq := request{method: "GET", uri: uris[g.r.IntN(len(uris))], ua: ua, status: 200, seconds: 0.05 + g.r.ExpFloat64()*0.3}
		if g.r.IntN(100) == 0 {
			rq.status = 500
		}
		return rq
	case p < 950: // WATCHes, long by nature
		uris := []string{
			"/api/v1/pods?allowWatchBookmarks=true&watch=true&timeoutSeconds=" + strconv.Itoa(300+g.r.IntN(300)),
			"/api/v1/namespaces/" + g.ns() + "/configmaps?watch=1&resourceVersion=" + strconv.Itoa(g.r.IntN(1<<30)),
			"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?watch=true",
			"/api/v1/watch/services",
		}
		ua := []string{uaKubelet, uaKCM, uaProxy, uaSched}[g.r.IntN(4)]
		return request{method: "GET", uri: uris[g.r.IntN(len(uris))], ua: ua, status: 200, seconds: 300 + g.r.Float64()*300}
	case p < 975: // events
		return request{method: "POST", uri: "/api/v1/namespaces/" + g.ns() + "/events", ua: uaKubelet, status: 201, seconds: 0.003 + g.r.ExpFloat64()*0.005}
	case p < 985: // kubectl writes
		method := []string{"POST", "DELETE", "PATCH"}[g.r.IntN(3)]
		status := []int{200, 201, 404, 409, 422}[g.r.IntN(5)]
		return request{method: method, uri: "/apis/apps/v1/namespaces/" + g.ns() + "/deployments/web-" + strconv.Itoa(g.r.IntN(50)),
			ua: uaKubectl, status: status, seconds: 0.01 + g.r.ExpFloat64()*0.02}
	case p < 995: // health checks and discovery
		uri := []string{"/healthz", "/readyz", "/livez", "/version", "/api", "/apis", "/openapi/v2"}[g.r.IntN(7)]
		return request{method: "GET", uri: uri, ua: "Go-http-client/1.1", status: 200, seconds: 0.001}
	default: // unauthenticated and stray requests
		uri := []string{"/", "/favicon.ico", "/api/v1/secrets", "/.env"}[g.r.IntN(4)]
		status := []int{401, 403, 404}[g.r.IntN(3)]
		return request{method: "GET", uri: uri, ua: uaBrowser, status: status, seconds: 0.001}
	}
}

// line formats rq as nginx writes it with the cascade_json log_format.
func (g *generator) line(rq request) []byte {
	g.now = g.now.Add(time.Duration(g.r.IntN(200)) * time.Microsecond)
	upstream := rq.upstream
	if upstream == "" {
		upstream = strconv.Itoa(rq.status)
	}
	b := g.buf[:0]
	b = append(b, `{"time":"`...)
	b = g.now.AppendFormat(b, "2006-01-02T15:04:05+00:00")
	b = append(b, `","msec":"`...)
	b = strconv.AppendFloat(b, float64(g.now.UnixMilli())/1e3, 'f', 3, 64)
	b = append(b, `","remote_addr":"10.`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, `","method":"`...)
	b = append(b, rq.method...)
	b = append(b, `","uri":"`...)
	b = append(b, rq.uri...)
	b = append(b, `","status":"`...)
	b = strconv.AppendInt(b, int64(rq.status), 10)
	b = append(b, `","request_time":"`...)
	b = strconv.AppendFloat(b, rq.seconds, 'f', 3, 64)
	b = append(b, `","upstream_status":"`...)
	b = append(b, upstream...)
	b = append(b, `","upstream_response_time":"`...)
	b = strconv.AppendFloat(b, rq.seconds, 'f', 3, 64)
	b = append(b, `","bytes_sent":"`...)
	b = strconv.AppendInt(b, int64(200+g.r.IntN(4000)), 10)
	b = append(b, `","user_agent":"`...)
	b = append(b, rq.ua...)
	b = append(b, "\"}\n"...)
	g.buf = b
	return b
}

// generate writes at least size bytes of whole lines to path (through a
// temporary file, so an interrupted run leaves no half log to reuse) and
// returns the number of lines.
func generate(path string, size int64) (int64, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := newGenerator()
	var written, lines int64
	for written < size {
		n, err := w.Write(g.line(g.next()))
		if err != nil {
			f.Close()
			return 0, err
		}
		written += int64(n)
		lines++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return lines, nil
}
