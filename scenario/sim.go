package scenario

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The fleet's constants, from Kubernetes's defaults.
const (
	leaseDuration = 40.0 // leaseDurationSeconds
	renewEvery    = 10.0 // the kubelet renews its lease every 10 s
	gracePeriod   = 50.0 // node-monitor-grace-period: Ready turns Unknown
	limitBytes    = 8 << 30
	maxReplicas   = 5
	luckyRenewal  = 0.03 // chance a failing kubelet's renewal gets through
	kubeletRetry  = 5.0  // requests a failing renewal costs, retries included
	memoryLag     = 30.0 // seconds for a working set to follow its demand
	restartMin    = 20.0 // seconds an OOM-killed replica stays down, at least
	// a replica's working set grows at most this share of the original
	// limit a second: caches fill as fast as requests are admitted
	growthCap = 0.005
)

// Scrape offsets of the three exporters within an interval, in seconds.
const (
	offsetAPIMemory = 0.8
	offsetNodeLease = 3.1
	offsetGateway   = 7.4
)

type replica struct {
	name      string
	exists    bool
	up        bool
	downUntil float64
	ws        float64
	limit     float64
	ooms      float64
	restarts  float64
}

type node struct {
	name    string
	zone    int
	phase   float64 // renewals at phase + k·10 s
	onset   float64 // 0..1: order of failing after the first OOM
	recover float64 // 0..1: order of recovering
	renew   float64 // last successful renewal, unix seconds
	exists  bool
	deadAt  float64 // +Inf: never
	backAt  float64
	unknown bool // Ready condition is Unknown (set by the node controller)
	joinAt  float64
	s       nodeSeries
}

// sim is one run of a plan: one cluster, or in a region one cluster or
// the shared API.
type sim struct {
	p        *plan
	o        Options
	rng      *rand.Rand
	start    float64 // unix seconds
	series   *store
	replicas []*replica
	nodes    []*node
	// src is the control plane whose failure fails these kubelets: this
	// one, or in a region the shared API that authenticates them (its
	// failures are then 401s); failDelay delays them after its first OOM.
	src       *sim
	failDelay float64

	firstOOM     float64 // unix seconds; 0 until it happens
	failingShare float64 // kubelets failing at the last step
	alive        int     // nodes alive at the last step
	// trafficScale multiplies the clients' requests at the gateway: a
	// region's shared gateway serves many clusters.
	trafficScale float64
	replaced     int
	// replacedShare is the share of the fleet auto-healing replaced, which
	// the API serves the bootstrap of (a region's: of every cluster).
	replacedShare float64
	lastEvent     float64
	gw            *gateway
	ownGateway    bool
	mem           memorySeries
	lease         leaseSeries
	events        []Event
}

// simEnv is where a sim writes: a store of its own for a lone cluster, the
// region's for its members, with the labels that name it in its targets.
type simEnv struct {
	store  *store
	rng    *rand.Rand
	labels []string // region, cluster or shared
	// instance prefixes the exporters' instance names, unique in a region.
	instance string
	// gw is where its kubelets' requests are counted; nil: a gateway of
	// its own.
	gw *gateway
}

func newSim(p *plan, o Options) *sim {
	var labels []string
	if o.Region != "" {
		labels = append(labels, "region", o.Region)
	}
	return newSimIn(p, o, simEnv{
		store: newStore(), rng: rand.New(rand.NewPCG(o.Seed, 0x5ca1ab1e)),
		labels: append(labels, "cluster", o.Cluster),
	})
}

func newSimIn(p *plan, o Options, env simEnv) *sim {
	start, err := time.Parse(time.RFC3339, p.start)
	if err != nil {
		panic(fmt.Sprintf("scenario %s: bad start: %v", p.name, err))
	}
	if !o.Start.IsZero() {
		start = o.Start
	}
	s := &sim{
		p: p, o: o, rng: env.rng,
		start:  float64(start.UnixMilli()) / 1000,
		series: env.store, trafficScale: 1,
	}
	s.src = s
	tg := func(inst string) target {
		return append(append(target{}, env.labels...), "instance", env.instance+inst, "job", "cascade")
	}
	for i := range maxReplicas {
		s.replicas = append(s.replicas, &replica{name: fmt.Sprintf("kube-apiserver-%d", i), limit: limitBytes})
	}
	for i := range o.Nodes {
		n := &node{
			name: fmt.Sprintf("node-%05d", i), zone: i % 3,
			phase: s.rng.Float64() * renewEvery, onset: s.rng.Float64(), recover: s.rng.Float64(),
			exists: true, deadAt: math.Inf(1), backAt: math.Inf(1),
		}
		n.renew = s.start - s.rng.Float64()*renewEvery
		s.nodes = append(s.nodes, n)
	}
	for _, d := range p.deaths {
		n := s.nodes[min(len(s.nodes)-1, int(d.node*float64(len(s.nodes))))]
		n.deadAt = s.at(d.at)
		if d.back > 0 {
			n.backAt = s.at(d.back)
		}
	}
	s.gw, s.ownGateway = env.gw, env.gw == nil
	if s.ownGateway {
		s.gw = newGateway(s.series, tg(instGateway))
	}
	s.mem = newMemorySeries(s.series, tg(instAPIMemory))
	if o.Nodes > 0 {
		s.lease = newLeaseSeries(s.series, tg(instNodeLease))
	}
	return s
}

// at turns an offset into unix seconds.
func (s *sim) at(d time.Duration) float64 { return s.start + d.Seconds() }

func (s *sim) offset(t float64) time.Duration {
	return time.Duration((t - s.start) * float64(time.Second))
}

func (s *sim) run() {
	step := s.o.Interval.Seconds()
	steps := int(s.p.span.Seconds() / step)
	for k := 0; k <= steps; k++ {
		t := s.start + float64(k)*step
		s.stepAPIServers(t, step)
		s.stepNodes(t+offsetNodeLease+s.jitter(), step)
		s.replacedShare = float64(s.replaced) / float64(len(s.nodes))
		s.stepGateway(t, step)
	}
}

// jitter is a scrape's lateness: up to 150 ms either way.
func (s *sim) jitter() float64 { return (s.rng.Float64() - 0.5) * 0.3 }

// valueAt returns the value of the last change at or before at.
func valueAt(changes []change, at time.Duration, initial float64) float64 {
	v := initial
	for _, c := range changes {
		if c.at <= at {
			v = c.value
		}
	}
	return v
}

func (s *sim) stepAPIServers(t, step float64) {
	at := s.offset(t)
	want := int(valueAt(s.p.replicaChanges, at, 3))
	limit := limitBytes * valueAt(s.p.limitChanges, at, 1)
	for i, r := range s.replicas {
		if i < want && !r.exists {
			r.exists, r.up, r.ws = true, true, 0.3*limitBytes
			if t == s.start {
				r.ws = s.p.demand(0) * limitBytes // already running
			}
		}
		r.limit = limit
	}
	for _, rs := range s.p.restarts {
		if r := s.replicas[rs.replica]; s.at(rs.at) > t-step && s.at(rs.at) <= t && r.up {
			r.up, r.downUntil, r.restarts = false, t+45, r.restarts+1
		}
	}
	// A replica comes back after its restart delay, with a cold cache.
	for _, r := range s.replicas {
		if r.exists && !r.up && t >= r.downUntil {
			r.up, r.ws = true, 0.3*limitBytes
		}
	}
	up := s.upReplicas()
	demand := s.p.demand(at) + s.retryLoad()
	for _, r := range s.replicas {
		if !r.exists || !r.up {
			continue
		}
		// The original replicas' demand, shared by those answering.
		target := demand * valueAt(s.p.replicaChanges, 0, 3) * limitBytes / float64(up)
		r.ws += math.Min((target-r.ws)*(1-math.Exp(-step/memoryLag)), growthCap*step*limitBytes)
		r.ws *= 1 + s.rng.NormFloat64()*0.004
		if r.ws >= r.limit {
			r.ooms++
			r.restarts++
			r.up, r.downUntil = false, t+restartMin+s.rng.Float64()*20
			if s.firstOOM == 0 {
				s.firstOOM = t
			}
			up--
			if up == 0 {
				up = 1 // the demand waits for whoever comes back first
			}
		}
	}
	s.mem.scrape(s, t+offsetAPIMemory+s.jitter())
}

// retryLoad is the memory the failing kubelets' retries and the
// replacement nodes' bootstrap cost the API servers.
func (s *sim) retryLoad() float64 {
	if s.p.failure == nil {
		return 0
	}
	load := s.p.failure.retryLoad * s.failingShare
	if s.p.autoheal != nil {
		load += 0.5 * s.replacedShare
	}
	return load
}

func (s *sim) upReplicas() int {
	n := 0
	for _, r := range s.replicas {
		if r.exists && r.up {
			n++
		}
	}
	return n
}

func (s *sim) existingReplicas() int {
	n := 0
	for _, r := range s.replicas {
		if r.exists {
			n++
		}
	}
	return n
}

// cpFailing says whether the control plane (this cluster's, or the shared
// API authenticating its kubelets) fails node n's requests at t.
func (s *sim) cpFailing(n *node, t float64) bool {
	f := s.src.p.failure
	if f == nil || s.src.firstOOM == 0 {
		return false
	}
	from := s.src.firstOOM + s.failDelay + n.onset*f.onset.Seconds()
	until := s.src.at(f.recoverFrom) + n.recover*f.recoverSpan.Seconds()
	return t >= from && t < until
}

func (s *sim) partitioned(n *node, t float64) bool {
	p := s.p.partition
	return p != nil && (n.zone == p.zone || p.zone == allZones) && t >= s.at(p.from) && t < s.at(p.to)
}

// stepNodes runs every kubelet's renewals up to t, the lease exporter's
// scrape time, and the node controller's view of them.
func (s *sim) stepNodes(t, step float64) {
	s.autoHeal(t, step)
	up := s.upReplicas()
	srcUp, srcAll := s.src.upReplicas(), s.src.existingReplicas()
	auth := s.src != s // refused by authentication, not by a dead API
	var failing, alive int
	for _, n := range s.nodes {
		if !n.exists || t < n.joinAt {
			continue
		}
		dead := t >= n.deadAt && t < n.backAt
		if !dead {
			alive++
		}
		cpFail := s.cpFailing(n, t)
		if cpFail {
			failing++
		}
		// Renewal attempts in (t-step, t].
		first := math.Floor((t-step-n.phase)/renewEvery) + 1
		for a := n.phase + first*renewEvery; a <= t; a += renewEvery {
			switch {
			case a >= n.deadAt && a < n.backAt, s.partitioned(n, a):
				// no request leaves the node, or none reaches the gateway
			case up == 0:
				s.gw.kubeletFailures(1)
			case cpFail && s.rng.Float64() >= luckyRenewal*float64(srcUp)/float64(srcAll):
				if auth {
					s.gw.kubeletAuthFailures(1)
				} else {
					s.gw.kubeletFailures(1)
				}
			default:
				n.renew = a + 0.005 + s.rng.Float64()*0.05
				s.gw.kubeletRenewals(1)
			}
		}
		if cpFail && auth {
			s.gw.kubeletAuthFailingNode(step)
		} else if cpFail {
			s.gw.kubeletFailingNode(step)
		} else if !dead && !s.partitioned(n, t) {
			s.gw.kubeletHealthyNode(step)
		}
		// The node lifecycle controller runs only while the API answers.
		if up > 0 {
			age := t - n.renew
			switch {
			case age >= gracePeriod:
				n.unknown = true
			case age < leaseDuration:
				n.unknown = false
			}
		}
	}
	s.alive = alive
	if alive > 0 {
		s.failingShare = float64(failing) / float64(alive)
	}
	s.lease.scrape(s, t, up > 0)
}

// autoHeal replaces nodes whose Ready condition is Unknown while the
// control plane fails: exactly the wrong thing, as in the second incident.
func (s *sim) autoHeal(t, step float64) {
	a := s.src.p.autoheal
	if a == nil || s.src.firstOOM == 0 {
		return
	}
	from := s.src.firstOOM + s.failDelay + a.after.Seconds()
	if t < from || t >= from+a.duration.Seconds() {
		return
	}
	budget := int(math.Ceil(a.fraction * float64(s.o.Nodes) * step / a.duration.Seconds()))
	for _, n := range s.nodes {
		if budget == 0 || float64(s.replaced) >= a.fraction*float64(s.o.Nodes) {
			break
		}
		if !n.exists || !n.unknown {
			continue
		}
		n.exists = false
		s.lease.forget(n)
		s.replaced++
		budget--
		repl := &node{
			name: fmt.Sprintf("node-r%05d", s.replaced), zone: n.zone,
			phase: s.rng.Float64() * renewEvery, onset: 0, recover: n.recover,
			exists: true, deadAt: math.Inf(1), backAt: math.Inf(1),
			// a new instance boots in 3 minutes, then fails like the rest
			joinAt: t + 180,
		}
		repl.renew = repl.joinAt
		s.nodes = append(s.nodes, repl)
		s.gw.bootstrap(1)
	}
}

func (s *sim) stepGateway(t, step float64) {
	at := s.offset(t)
	controller, kubectl, other := s.p.traffic(at)
	d := diurnal(time.Unix(int64(t), 0).In(cet))
	// The share of non-kubelet requests the API fails: every one when no
	// replica answers, most while it crash-loops, none otherwise.
	fail := 0.0
	switch up := s.upReplicas(); {
	case up == 0:
		fail = 1
	case s.failingShare > 0.2:
		fail = 0.7
	}
	overloaded := s.maxMemoryShare() >= 0.85 || fail > 0
	d *= s.trafficScale
	s.gw.clients(step, d*20*controller, d*1*kubectl, d*3*other, fail, overloaded)
	s.gw.scrape(s, t+offsetGateway+s.jitter())
}

func (s *sim) maxMemoryShare() float64 {
	m := 0.0
	for _, r := range s.replicas {
		if r.exists && r.up {
			m = math.Max(m, r.ws/r.limit)
		}
	}
	return m
}

// truth is the plan's scripted events plus what the simulation decided.
func (s *sim) truth() Truth {
	start := time.UnixMilli(int64(s.start * 1000)).UTC()
	tr := Truth{
		Scenario: s.p.name, Nodes: s.o.Nodes, Cluster: s.o.Cluster, Region: s.o.Region,
		Start: start, End: start.Add(s.p.span),
		ExpectIncident: s.p.expectIncident, RootCause: s.p.rootCause, ExpectGuard: s.p.expectGuard,
	}
	if s.p.expectIncident {
		tr.Scope = ScopeCluster
	}
	if s.p.expectGuard {
		tr.ClustersHit = []string{s.o.Cluster}
	}
	for _, e := range s.p.events {
		tr.Events = append(tr.Events, Event{Time: start.Add(e.at), Name: e.name, Detail: e.detail})
	}
	if s.firstOOM != 0 {
		tr.Events = append(tr.Events, Event{Time: time.UnixMilli(int64(s.firstOOM * 1000)).UTC(), Name: FirstOOM, Detail: "first API server replica OOM-killed"})
	}
	if s.p.autoheal != nil && s.replaced > 0 {
		tr.Events = append(tr.Events, Event{Time: time.UnixMilli(int64((s.firstOOM + s.p.autoheal.after.Seconds()) * 1000)).UTC(),
			Name: "autoheal_start", Detail: fmt.Sprintf("auto-healing replaces %d nodes that were only cut off", s.replaced)})
	}
	sortEvents(tr.Events)
	return tr
}
