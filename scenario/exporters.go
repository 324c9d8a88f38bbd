package scenario

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cascade-sre/cascade/internal/contract"
)

// The three exporters, as `cascade exporter` exposes them, each scraped
// from its own instance.
const (
	instAPIMemory = "apimemory-0:9847"
	instNodeLease = "nodelease-0:9847"
	instGateway   = "gateway-0:9847"
)

// memorySeries is the API server memory exporter.
type memorySeries struct {
	tg                            target
	ws, limit, ooms, restarts, up *family
	byReplica                     map[string][5]*series
}

func newMemorySeries(st *store, tg target) memorySeries {
	return memorySeries{
		tg:        tg,
		ws:        st.family(contract.APIServerWorkingSet),
		limit:     st.family(contract.APIServerLimit),
		ooms:      st.family(contract.APIServerOOMKills),
		restarts:  st.family(contract.APIServerRestarts),
		up:        st.family(contract.APIServerUp),
		byReplica: map[string][5]*series{},
	}
}

func (m memorySeries) scrape(s *sim, t float64) {
	for _, r := range s.replicas {
		if !r.exists {
			continue
		}
		ss, ok := m.byReplica[r.name]
		if !ok {
			ss = [5]*series{
				m.ws.newSeries("", m.tg, "replica", r.name),
				m.limit.newSeries("", m.tg, "replica", r.name),
				m.ooms.newSeries("_total", m.tg, "replica", r.name),
				m.restarts.newSeries("_total", m.tg, "replica", r.name),
				m.up.newSeries("", m.tg, "replica", r.name),
			}
			m.byReplica[r.name] = ss
		}
		// A replica that does not answer has no working set to report.
		if r.up {
			ss[0].add(t, math.Round(r.ws))
		}
		ss[1].add(t, r.limit)
		ss[2].add(t, r.ooms)
		ss[3].add(t, r.restarts)
		ss[4].add(t, b2f(r.up))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// leaseSeries is the node lease exporter: nothing but its own health while
// its watch is down, never stale counts passed off as current.
type leaseSeries struct {
	tg                                                 target
	watchUp, lastEvent, leases, nodes, renew, duration *family
	states, conditions                                 [3]*series
	watchUpS, lastEventS                               *series
}

type nodeSeries struct{ renew, duration *series }

func newLeaseSeries(st *store, tg target) leaseSeries {
	l := leaseSeries{
		tg:        tg,
		watchUp:   st.family(contract.NodeLeaseWatchUp),
		lastEvent: st.family(contract.NodeLeaseWatchLastEvent),
		leases:    st.family(contract.NodeLeases),
		nodes:     st.family(contract.Nodes),
		renew:     st.family(contract.NodeLeaseRenewTimestamp),
		duration:  st.family(contract.NodeLeaseDuration),
	}
	l.watchUpS = l.watchUp.newSeries("", tg)
	l.lastEventS = l.lastEvent.newSeries("", tg)
	for i, state := range contract.LeaseStates {
		l.states[i] = l.leases.newSeries("", tg, "state", state)
	}
	for i, c := range contract.NodeConditions {
		l.conditions[i] = l.nodes.newSeries("", tg, "condition", c)
	}
	return l
}

// forget drops a deleted node's series: nothing more is appended to them.
func (l leaseSeries) forget(n *node) { n.s = nodeSeries{} }

func (l leaseSeries) scrape(s *sim, t float64, watchUp bool) {
	l.watchUpS.add(t, b2f(watchUp))
	if watchUp {
		s.lastEvent = t - s.rng.Float64()*2
	}
	if s.lastEvent > 0 {
		l.lastEventS.add(t, s.lastEvent)
	}
	if !watchUp {
		return
	}
	var states, conditions [3]float64
	for _, n := range s.nodes {
		if !n.exists || t < n.joinAt {
			continue
		}
		switch age := t - n.renew; {
		case age < leaseDuration/4:
			states[0]++
		case age < leaseDuration:
			states[1]++
		default:
			states[2]++
		}
		switch {
		case n.unknown:
			conditions[2]++
		case t < n.joinAt+60:
			conditions[1]++ // a new node's kubelet reports NotReady at first
		default:
			conditions[0]++
		}
		if s.o.NoPerNodeSeries {
			continue
		}
		if n.s.renew == nil {
			n.s = nodeSeries{
				renew:    l.renew.newSeries("", l.tg, "node", n.name),
				duration: l.duration.newSeries("", l.tg, "node", n.name),
			}
		}
		n.s.renew.add(t, math.Round(n.renew*1000)/1000)
		n.s.duration.add(t, leaseDuration)
	}
	for i := range 3 {
		l.states[i].add(t, states[i])
		l.conditions[i].add(t, conditions[i])
	}
}

// gateway is the gateway exporter: request counters by route, method, code
// and client, latency, timeouts and log lines, accumulated per interval.
type gateway struct {
	tg                        target
	requests, duration, tmo   *family
	lines                     *family
	counts                    map[stream]float64
	reqS                      map[stream]*series
	buckets                   map[routeClient]*histogram
	timeouts                  map[routeClient]float64
	tmoS                      map[routeClient]*series
	parsed, malformed         float64
	parsedS, malformedS       *series
	pendingFail, pendingRenew float64
	pendingFailing, pendingOK float64
	pendingBootstrap          float64
	// kubelets refused by authentication (a region's shared API down)
	pendingAuthFail, pendingAuthFailing float64
}

type stream struct{ route, method, code, client string }

type routeClient struct{ route, client string }

type histogram struct {
	counts       []float64 // per bucket, not cumulative
	sum, count   float64
	bucketS      []*series
	sumS, countS *series
}

// bounds are the buckets of the gateway's latency histogram.
var bounds = contract.GatewayDurationBuckets

const (
	routeLease   = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
	routeStatus  = "/api/v1/nodes/{name}/status"
	routePods    = "/api/v1/pods"
	routeNSPods  = "/api/v1/namespaces/{namespace}/pods"
	routeDeploys = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
	routeCSR     = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
	routeVersion = "/version"
)

func newGateway(st *store, tg target) *gateway {
	return &gateway{
		tg:       tg,
		requests: st.family(contract.GatewayRequests),
		duration: st.family(contract.GatewayRequestDuration),
		tmo:      st.family(contract.GatewayTimeouts),
		lines:    st.family(contract.GatewayLogLines),
		counts:   map[stream]float64{}, reqS: map[stream]*series{},
		buckets: map[routeClient]*histogram{}, timeouts: map[routeClient]float64{}, tmoS: map[routeClient]*series{},
	}
}

// kubeletRenewals and kubeletFailures count lease renewals; a failed one
// costs kubeletRetry requests.
func (g *gateway) kubeletRenewals(n float64) { g.pendingRenew += n }
func (g *gateway) kubeletFailures(n float64) { g.pendingFail += n }

// kubeletHealthyNode and kubeletFailingNode add a kubelet's other requests
// over step seconds: status updates and pod lists, or their retries.
func (g *gateway) kubeletHealthyNode(step float64) { g.pendingOK += step }
func (g *gateway) kubeletFailingNode(step float64) { g.pendingFailing += step }

// kubeletAuthFailures and kubeletAuthFailingNode are the same for kubelets
// their API server cannot authenticate: answered 401, quickly.
func (g *gateway) kubeletAuthFailures(n float64)       { g.pendingAuthFail += n }
func (g *gateway) kubeletAuthFailingNode(step float64) { g.pendingAuthFailing += step }

// bootstrap counts a replacement node's certificate request and join.
func (g *gateway) bootstrap(n float64) { g.pendingBootstrap += n }

// The failure mix of a request the API does not serve: mostly upstream
// timeouts at the gateway, then 503s, and 401s where authentication fails.
var failureMix = mix{{"504", 0.55, 60}, {"503", 0.35, 0.004}, {"401", 0.10, 0.02}}

// authMix is a request refused because its token cannot be checked.
var authMix = mix{{"401", 1, 0.03}}

type mix []struct {
	code    string
	share   float64
	latency float64
}

// clients adds the other clients' requests over step seconds at their
// rates per second, failing a share fail, slower when overloaded.
func (g *gateway) clients(step, controller, kubectl, other, fail float64, overloaded bool) {
	g.serve(routeLease, "PUT", contract.ClientKubelet, g.pendingRenew, g.pendingFail*kubeletRetry, overloaded)
	g.serve(routeStatus, "PATCH", contract.ClientKubelet, g.pendingOK/60, g.pendingFailing*0.1, overloaded)
	g.serve(routePods, "GET", contract.ClientKubelet, g.pendingOK*0.02, g.pendingFailing*0.05, overloaded)
	g.serve(routeCSR, "POST", contract.ClientKubelet, 0, g.pendingBootstrap*20, overloaded)
	if g.pendingAuthFail+g.pendingAuthFailing > 0 {
		g.serveMix(routeLease, "PUT", contract.ClientKubelet, 0, g.pendingAuthFail*kubeletRetry, overloaded, authMix)
		g.serveMix(routeStatus, "PATCH", contract.ClientKubelet, 0, g.pendingAuthFailing*0.1, overloaded, authMix)
	}
	g.pendingRenew, g.pendingFail, g.pendingOK, g.pendingFailing, g.pendingBootstrap = 0, 0, 0, 0, 0
	g.pendingAuthFail, g.pendingAuthFailing = 0, 0
	for _, c := range []struct {
		route, method, client string
		rate                  float64
	}{
		{routeDeploys, "PUT", contract.ClientController, controller * 0.4},
		{routeNSPods, "GET", contract.ClientController, controller * 0.6},
		{routeNSPods, "GET", contract.ClientKubectl, kubectl},
		{routeVersion, "GET", contract.ClientOther, other * 0.2},
		{routePods, "GET", contract.ClientOther, other * 0.8},
	} {
		n := c.rate * step
		g.serve(c.route, c.method, c.client, n*(1-fail), n*fail, overloaded)
	}
}

// serve counts ok successful and failed requests of one route and client.
func (g *gateway) serve(route, method, client string, ok, failed float64, overloaded bool) {
	g.serveMix(route, method, client, ok, failed, overloaded, failureMix)
}

// serveMix is serve with the failed requests answered as fails says.
func (g *gateway) serveMix(route, method, client string, ok, failed float64, overloaded bool, fails mix) {
	rc := routeClient{route, client}
	h := g.histogram(rc)
	if ok > 0 {
		g.counts[stream{route, method, "200", client}] += ok
		// successful latency: 10-100 ms, ten times slower when overloaded
		slow := 1.0
		if overloaded {
			slow = 10
		}
		for _, l := range []struct{ latency, share float64 }{{0.008, 0.1}, {0.02, 0.3}, {0.04, 0.3}, {0.08, 0.2}, {0.2, 0.08}, {0.4, 0.02}} {
			h.observe(l.latency*slow, ok*l.share)
		}
	}
	for _, f := range fails {
		n := failed * f.share
		if n == 0 {
			continue
		}
		g.counts[stream{route, method, f.code, client}] += n
		h.observe(f.latency, n)
		if f.code == "504" {
			g.timeouts[rc] += n
		}
	}
	total := ok + failed
	g.parsed += total
	g.malformed += total * 0.0002
}

func (g *gateway) histogram(rc routeClient) *histogram {
	h, ok := g.buckets[rc]
	if !ok {
		h = &histogram{counts: make([]float64, len(bounds)+1)}
		for _, b := range bounds {
			h.bucketS = append(h.bucketS, g.duration.newSeries("_bucket", g.tg, "route", rc.route, "client", rc.client, "le", strconv.FormatFloat(b, 'g', -1, 64)))
		}
		h.bucketS = append(h.bucketS, g.duration.newSeries("_bucket", g.tg, "route", rc.route, "client", rc.client, "le", "+Inf"))
		h.sumS = g.duration.newSeries("_sum", g.tg, "route", rc.route, "client", rc.client)
		h.countS = g.duration.newSeries("_count", g.tg, "route", rc.route, "client", rc.client)
		g.buckets[rc] = h
	}
	return h
}

func (h *histogram) observe(latency, n float64) {
	i := 0
	for i < len(bounds) && latency > bounds[i] {
		i++
	}
	h.counts[i] += n
	h.sum += latency * n
	h.count += n
}

// scrape appends every counter, rounded down to whole requests as the
// exporter counts them.
func (g *gateway) scrape(s *sim, t float64) {
	// sorted, so the same seed gives the same bytes
	for _, k := range slices.SortedFunc(maps.Keys(g.counts), func(a, b stream) int {
		return cmp.Or(strings.Compare(a.route, b.route), strings.Compare(a.client, b.client), strings.Compare(a.method, b.method), strings.Compare(a.code, b.code))
	}) {
		v := g.counts[k]
		sr, ok := g.reqS[k]
		if !ok {
			sr = g.requests.newSeries("_total", g.tg, "route", k.route, "method", k.method, "code", k.code, "client", k.client)
			g.reqS[k] = sr
		}
		sr.add(t, math.Floor(v))
	}
	for _, rc := range slices.SortedFunc(maps.Keys(g.buckets), func(a, b routeClient) int {
		return cmp.Or(strings.Compare(a.route, b.route), strings.Compare(a.client, b.client))
	}) {
		h := g.buckets[rc]
		cum := 0.0
		for i, c := range h.counts {
			cum += c
			h.bucketS[i].add(t, math.Floor(cum))
		}
		h.sumS.add(t, math.Round(h.sum*1000)/1000)
		h.countS.add(t, math.Floor(h.count))
		if v, ok := g.timeouts[rc]; ok {
			sr, ok := g.tmoS[rc]
			if !ok {
				sr = g.tmo.newSeries("_total", g.tg, "route", rc.route, "client", rc.client)
				g.tmoS[rc] = sr
			}
			sr.add(t, math.Floor(v))
		}
	}
	if g.parsedS == nil {
		g.parsedS = g.lines.newSeries("_total", g.tg, "result", contract.LinesParsed)
		g.malformedS = g.lines.newSeries("_total", g.tg, "result", contract.LinesMalformed)
	}
	g.parsedS.add(t, math.Floor(g.parsed))
	g.malformedS.add(t, math.Floor(g.malformed))
}
