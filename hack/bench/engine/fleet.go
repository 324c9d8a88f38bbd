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

	"github.com/cascade-sre/cascade/internal/contract"
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
	bucketBounds = contract.GatewayDurationBuckets
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
	family := func(m contract.Metric) { b = append(b, m.Header()...) }
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
	family(contract.APIServerWorkingSet)
	for i := range apiserverReplicas {
		share := 0.475 + 0.075*math.Sin(2*math.Pi*elapsed/600+float64(i))
		sample(contract.APIServerWorkingSet.Name, replica(i), math.Round(share*memoryLimitBytes))
	}
	family(contract.APIServerLimit)
	for i := range apiserverReplicas {
		sample(contract.APIServerLimit.Name, replica(i), memoryLimitBytes)
	}
	for _, m := range []contract.Metric{contract.APIServerOOMKills, contract.APIServerRestarts} {
		family(m)
		for i := range apiserverReplicas {
			sample(m.Name, replica(i), 0)
		}
	}
	family(contract.APIServerUp)
	for i := range apiserverReplicas {
		sample(contract.APIServerUp.Name, replica(i), 1)
	}

	// Node leases: node i renews at phase i/n of the renew interval.
	family(contract.NodeLeaseWatchUp)
	sample(contract.NodeLeaseWatchUp.Name, "", 1)
	family(contract.NodeLeaseWatchLastEvent)
	sample(contract.NodeLeaseWatchLastEvent.Name, "", math.Round(t*1000)/1000)
	family(contract.NodeLeases)
	sample(contract.NodeLeases.Name, `state="fresh"`, float64(f.nodes))
	sample(contract.NodeLeases.Name, `state="late"`, 0)
	sample(contract.NodeLeases.Name, `state="expired"`, 0)
	family(contract.Nodes)
	sample(contract.Nodes.Name, `condition="ready"`, float64(f.nodes))
	sample(contract.Nodes.Name, `condition="not_ready"`, 0)
	sample(contract.Nodes.Name, `condition="unknown"`, 0)
	family(contract.NodeLeaseRenewTimestamp)
	for i, name := range f.names {
		phase := leaseRenewSeconds * float64(i) / float64(f.nodes)
		renew := math.Floor((t-phase)/leaseRenewSeconds)*leaseRenewSeconds + phase
		sample(contract.NodeLeaseRenewTimestamp.Name, `node="`+name+`"`, math.Round(renew*1000)/1000)
	}
	family(contract.NodeLeaseDuration)
	for _, name := range f.names {
		sample(contract.NodeLeaseDuration.Name, `node="`+name+`"`, leaseDurationSeconds)
	}

	// Gateway: counters from the rates over the time since the start, with
	// an hour of history before it so that nothing starts at zero.
	seconds := elapsed + 3600
	count := func(s stream) float64 {
		return math.Floor((s.perSecond + s.perNodeSecond*float64(f.nodes)) * seconds)
	}
	family(contract.GatewayRequests)
	var lines float64
	for _, s := range streams {
		n := count(s)
		lines += n
		sample(contract.GatewayRequests.Name,
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
	family(contract.GatewayRequestDuration)
	for _, rc := range pairs {
		labels := `route="` + rc.route + `",client="` + rc.client + `"`
		n := total[rc]
		for i, bound := range bucketBounds {
			sample(contract.GatewayRequestDuration.Name+"_bucket",
				labels+`,le="`+strconv.FormatFloat(bound, 'g', -1, 64)+`"`, math.Floor(n*bucketShares[i]))
		}
		sample(contract.GatewayRequestDuration.Name+"_bucket", labels+`,le="+Inf"`, n)
		sample(contract.GatewayRequestDuration.Name+"_sum", labels, math.Round(n*meanLatencySeconds*1000)/1000)
		sample(contract.GatewayRequestDuration.Name+"_count", labels, n)
	}
	family(contract.GatewayTimeouts)
	for _, rc := range pairs {
		if v, ok := timeouts[rc]; ok {
			sample(contract.GatewayTimeouts.Name, `route="`+rc.route+`",client="`+rc.client+`"`, v)
		}
	}
	family(contract.GatewayLogLines)
	sample(contract.GatewayLogLines.Name, `result="parsed"`, lines)
	sample(contract.GatewayLogLines.Name, `result="malformed"`, math.Floor(lines*0.0002))
	return b
}

func replica(i int) string { return `replica="apiserver-` + strconv.Itoa(i) + `"` }
