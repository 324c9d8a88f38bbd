package main

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// fleet is one scrape target serving, "now", what `cascade exporter` with
// all three exporters on would serve for a healthy cluster of n nodes: the
// metric contract of DESIGN.md. Values move with the wall clock, so both
// scrapers see the same values when they scrape at the same moment:
//   - every node renews its lease every 10 s at its own phase, so each
//     cascade_node_lease_renew_timestamp_seconds changes at every scrape and
//     every lease is fresh;
//   - three API server replicas at 40-55 % of an 8 GiB limit, slowly
//     waving;
//   - gateway counters and histograms growing at the rates such a fleet
//     sends (lease PUTs n/10 per second, status PATCHes n/60, ...).
//
// It also counts the scrapes it served, by user agent, to show that both
// scrapers scraped alike.
type fleet struct {
	nodes int
	start time.Time
	names []string // node names, made once

	mu      sync.Mutex
	scrapes map[string]int // by User-Agent
	bytes   int
	srv     *http.Server
	addr    string
}

const (
	leaseRenewSeconds    = 10
	leaseDurationSeconds = 40
	apiserverReplicas    = 3
	memoryLimitBytes     = 8 << 30
)

// gateway streams: route, method, code, client and requests per second,
// either fixed or per node of the fleet.
type stream struct {
	route, method, code, client string
	perSecond, perNodeSecond    float64
}

const (
	routeLease   = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
	routeStatus  = "/api/v1/nodes/{name}/status"
	routePods    = "/api/v1/pods"
	routeNSPods  = "/api/v1/namespaces/{namespace}/pods"
	routeDeploys = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
	routeVersion = "/version"
)

var streams = []stream{
	{routeLease, "PUT", "200", "kubelet", 0, 1.0 / leaseRenewSeconds},
	{routeLease, "PUT", "503", "kubelet", 0.01, 0},
	{routeLease, "PUT", "504", "kubelet", 0.005, 0},
	{routeStatus, "PATCH", "200", "kubelet", 0, 1.0 / 60},
	{routePods, "GET", "200", "kubelet", 0, 0.02},
	{routeDeploys, "PUT", "200", "controller", 20, 0},
	{routeDeploys, "PUT", "409", "controller", 0.5, 0},
	{routeNSPods, "GET", "200", "controller", 30, 0},
	{routeNSPods, "GET", "200", "kubectl", 2, 0},
	{routeNSPods, "GET", "404", "kubectl", 0.1, 0},
	{routeVersion, "GET", "200", "other", 1, 0},
	{routePods, "GET", "200", "other", 4, 0},
	{routePods, "GET", "403", "other", 0.2, 0},
}

// Bucket bounds of cascade_gateway_request_duration_seconds, and the share
// of requests at or below each (a 10-400 ms spread, the same for every
// route).
var (
	bucketBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	bucketShares = []float64{0, 0.1, 0.4, 0.7, 0.9, 0.98, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
)

const meanLatencySeconds = 0.05

func startFleet(nodes int) (*fleet, error) {
	f := &fleet{nodes: nodes, start: time.Now(), scrapes: map[string]int{}}
	for i := range nodes {
		f.names = append(f.names, fmt.Sprintf("node-%05d", i))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.addr = l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", f.serve)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(l) }()
	return f, nil
}

func (f *fleet) stop() { _ = f.srv.Close() }

func (f *fleet) serve(w http.ResponseWriter, r *http.Request) {
	b := f.appendText(make([]byte, 0, 96*f.nodes+64<<10), time.Now())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	f.mu.Lock()
	f.scrapes[r.UserAgent()]++
	f.bytes = len(b)
	f.mu.Unlock()
}

// scrapeCounts is the number of scrapes served per user agent, sorted by
// user agent, and the size of the last one.
func (f *fleet) scrapeCounts() (agents []string, counts []int, size int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ua := range f.scrapes {
		agents = append(agents, ua)
	}
	slices.Sort(agents)
	for _, ua := range agents {
		counts = append(counts, f.scrapes[ua])
	}
	return agents, counts, f.bytes
}

// appendText appends the whole exposition at now, in the Prometheus text
// format.
func (f *fleet) appendText(b []byte, now time.Time) []byte {
	t := float64(now.UnixNano()) / 1e9
	elapsed := now.Sub(f.start).Seconds()
	family := func(name, typ, help string) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name, labels string, v float64) {
		b = append(b, name...)
		if labels != "" {
			b = append(b, '{')
			b = append(b, labels...)
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
		b = append(b, '\n')
	}

	// API server memory.
	family("cascade_apiserver_memory_working_set_bytes", "gauge", "Working set of the API server replica.")
	for i := range apiserverReplicas {
		share := 0.475 + 0.075*math.Sin(2*math.Pi*elapsed/600+float64(i))
		sample("cascade_apiserver_memory_working_set_bytes", replica(i), math.Round(share*memoryLimitBytes))
	}
	family("cascade_apiserver_memory_limit_bytes", "gauge", "Effective memory limit of the API server replica.")
	for i := range apiserverReplicas {
		sample("cascade_apiserver_memory_limit_bytes", replica(i), memoryLimitBytes)
	}
	for _, name := range []string{"cascade_apiserver_oom_kills_total", "cascade_apiserver_restarts_total"} {
		family(name, "counter", "Events observed.")
		for i := range apiserverReplicas {
			sample(name, replica(i), 0)
		}
	}
	family("cascade_apiserver_up", "gauge", "1 when the last probe of the API server replica succeeded.")
	for i := range apiserverReplicas {
		sample("cascade_apiserver_up", replica(i), 1)
	}

	// Node leases: node i renews at phase i/n of the renew interval.
	family("cascade_node_lease_watch_up", "gauge", "1 while the lease watch is healthy.")
	sample("cascade_node_lease_watch_up", "", 1)
	family("cascade_node_lease_watch_last_event_timestamp_seconds", "gauge", "Last event or successful relist of the lease watch.")
	sample("cascade_node_lease_watch_last_event_timestamp_seconds", "", math.Round(t*1000)/1000)
	family("cascade_node_leases", "gauge", "Node leases by state.")
	sample("cascade_node_leases", `state="fresh"`, float64(f.nodes))
	sample("cascade_node_leases", `state="late"`, 0)
	sample("cascade_node_leases", `state="expired"`, 0)
	family("cascade_nodes", "gauge", "Nodes by Ready condition.")
	sample("cascade_nodes", `condition="ready"`, float64(f.nodes))
	sample("cascade_nodes", `condition="not_ready"`, 0)
	sample("cascade_nodes", `condition="unknown"`, 0)
	family("cascade_node_lease_renew_timestamp_seconds", "gauge", "renewTime of the node's lease.")
	for i, name := range f.names {
		phase := leaseRenewSeconds * float64(i) / float64(f.nodes)
		renew := math.Floor((t-phase)/leaseRenewSeconds)*leaseRenewSeconds + phase
		sample("cascade_node_lease_renew_timestamp_seconds", `node="`+name+`"`, math.Round(renew*1000)/1000)
	}
	family("cascade_node_lease_duration_seconds", "gauge", "leaseDurationSeconds of the node's lease.")
	for _, name := range f.names {
		sample("cascade_node_lease_duration_seconds", `node="`+name+`"`, leaseDurationSeconds)
	}

	// Gateway: counters from the rates over the time since the start, with
	// an hour of history before it so that nothing starts at zero.
	seconds := elapsed + 3600
	count := func(s stream) float64 {
		return math.Floor((s.perSecond + s.perNodeSecond*float64(f.nodes)) * seconds)
	}
	family("cascade_gateway_requests_total", "counter", "Requests seen in the gateway's access log.")
	var lines float64
	for _, s := range streams {
		n := count(s)
		lines += n
		sample("cascade_gateway_requests_total",
			`route="`+s.route+`",method="`+s.method+`",code="`+s.code+`",client="`+s.client+`"`, n)
	}
	type routeClient struct{ route, client string }
	var pairs []routeClient
	total := map[routeClient]float64{}
	timeouts := map[routeClient]float64{}
	for _, s := range streams {
		rc := routeClient{s.route, s.client}
		if _, seen := total[rc]; !seen {
			pairs = append(pairs, rc)
		}
		total[rc] += count(s)
		if s.code == "504" {
			timeouts[rc] += count(s)
		}
	}
	family("cascade_gateway_request_duration_seconds", "histogram", "Request latency.")
	for _, rc := range pairs {
		labels := `route="` + rc.route + `",client="` + rc.client + `"`
		n := total[rc]
		for i, bound := range bucketBounds {
			sample("cascade_gateway_request_duration_seconds_bucket",
				labels+`,le="`+strconv.FormatFloat(bound, 'g', -1, 64)+`"`, math.Floor(n*bucketShares[i]))
		}
		sample("cascade_gateway_request_duration_seconds_bucket", labels+`,le="+Inf"`, n)
		sample("cascade_gateway_request_duration_seconds_sum", labels, math.Round(n*meanLatencySeconds*1000)/1000)
		sample("cascade_gateway_request_duration_seconds_count", labels, n)
	}
	family("cascade_gateway_timeouts_total", "counter", "Upstream timeouts.")
	for _, rc := range pairs {
		if v, ok := timeouts[rc]; ok {
			sample("cascade_gateway_timeouts_total", `route="`+rc.route+`",client="`+rc.client+`"`, v)
		}
	}
	family("cascade_gateway_log_lines_total", "counter", "Access log lines read, by result.")
	sample("cascade_gateway_log_lines_total", `result="parsed"`, lines)
	sample("cascade_gateway_log_lines_total", `result="malformed"`, math.Floor(lines*0.0002))
	return b
}

func replica(i int) string { return `replica="apiserver-` + strconv.Itoa(i) + `"` }
