package scenario

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// A region is the seed's shape: many managed clusters, each with its own
// API server, lease exporter and nodes, and a shared regional API (the
// provider's, multi-tenant, which also authenticates every cluster's
// kubelets) behind a shared API gateway. The shared components' series
// carry `region` and `shared` (their name), never `cluster`: see
// rules/README.md, "Regions and shared components".
const (
	sharedAPI     = "regional-api"
	sharedGateway = "regional-gateway"
	// DefaultRegion names the region of the regional scenarios.
	DefaultRegion = "fr-par"
	// DefaultClusters and DefaultClusterNodes size a region by default.
	DefaultClusters     = 20
	DefaultClusterNodes = 20
	// MaxClusters and MaxRegionNodes bound a region.
	MaxClusters    = 1000
	MaxRegionNodes = 50_000
)

// regionPlan is a regional scenario: the shared API's plan (its memory,
// replicas and failure, the traffic at the shared gateway, the scripted
// events; its start and span are the region's) and what each cluster does.
type regionPlan struct {
	name, summary string
	shared        *plan
	// hitShare of the clusters have kubelets the shared API's failure
	// fails (authentication refused); the others do not depend on it.
	hitShare float64
	// member returns the own plan of cluster i of n; nil: a healthy one.
	member func(i, n int) *plan

	expectIncident bool
	scope          string // "region" or "cluster"
	rootCause      string
	expectGuard    bool
}

// healthyMember is a managed cluster minding its own business: one API
// server replica at a quiet level.
func healthyMember(start string) *plan {
	return &plan{
		name: "member", start: start, span: 0,
		demand: func(time.Duration) float64 { return quiet }, traffic: steady,
		replicaChanges: []change{{0, 1}},
	}
}

// cutOff is a cluster whose nodes all lose their path to its API server
// for 8 minutes from at (its network, not the region's).
func cutOff(start string, at time.Duration) *plan {
	p := healthyMember(start)
	p.partition = &partition{from: at, to: at + 8*minute, zone: allZones}
	return p
}

const seedStart = "2026-01-14T23:18:00+01:00"

var regionPlans = []*regionPlan{
	{
		name: "regional-outage",
		summary: "the seed's outage: the shared regional API that authenticates every cluster's kubelets is OOM-killed at 23:48 under simultaneous deployments; " +
			"kubelets of three quarters of the clusters get 401s from their own, healthy API servers, leases expire, retries flood the shared gateway; limit raised and replicas added, recovery by 01:13",
		shared: &plan{
			start: seedStart, span: 132 * minute,
			demand: func(at time.Duration) float64 {
				return quiet + bump(at, 9*minute, 21*minute, 72*minute, 15*minute, 21*0.022)
			},
			traffic: func(at time.Duration) (float64, float64, float64) {
				return 1 + bump(at, 8*minute, 2*minute, 72*minute, 10*minute, 2), 1 + bump(at, 42*minute, 2*minute, 75*minute, 10*minute, 6), 1
			},
			limitChanges:   []change{{78 * minute, 2}},
			replicaChanges: []change{{0, 3}, {80 * minute, 5}},
			failure:        &failure{onset: 45 * time.Second, recoverFrom: 85 * minute, recoverSpan: 27 * minute, retryLoad: 0.6},
			events: []scripted{
				{9 * minute, "deployments_start", "simultaneous deployments across the region"},
				{78 * minute, "limit_raised", "shared API memory limit doubled"},
				{80 * minute, "replicas_added", "shared API replicas 3 → 5"},
				{115 * minute, Recovered, "every cluster's nodes renewing, gateway quiet"},
			},
		},
		hitShare:       0.75,
		expectIncident: true, scope: ScopeRegion, rootCause: "apiserver_oom", expectGuard: true,
	},
	{
		name:    "regional-autoheal",
		summary: "the second incident of the class, regional: the shared API OOM-killed, nodes NotReady in most clusters, auto-healing replaces them in every cluster and their bootstrap keeps the shared API down longer",
		shared: &plan{
			start: "2026-02-03T14:05:00+01:00", span: 120 * minute,
			demand: func(at time.Duration) float64 {
				return quiet + bump(at, 15*minute, 13*minute, 70*minute, 15*minute, 0.47)
			},
			traffic: func(at time.Duration) (float64, float64, float64) {
				return 1 + bump(at, 15*minute, 3*minute, 70*minute, 10*minute, 1.5), 1 + bump(at, 35*minute, 2*minute, 70*minute, 10*minute, 4), 1
			},
			limitChanges:   []change{{64 * minute, 2}},
			replicaChanges: []change{{0, 3}, {66 * minute, 5}},
			failure:        &failure{onset: 40 * time.Second, recoverFrom: 70 * minute, recoverSpan: 25 * minute, retryLoad: 0.7},
			autoheal:       &autoheal{after: 5 * minute, duration: 20 * minute, fraction: 0.3},
			events: []scripted{
				{15 * minute, "load_climb", "shared API memory demand climbs"},
				{64 * minute, "limit_raised", "shared API memory limit doubled"},
				{66 * minute, "replicas_added", "shared API replicas 3 → 5"},
				{100 * minute, Recovered, "every cluster's nodes renewing, replacements joined"},
			},
		},
		hitShare:       0.8,
		expectIncident: true, scope: ScopeRegion, rootCause: "apiserver_oom", expectGuard: true,
	},
	{
		name:    "regional-shared-restart",
		summary: "lookalike: the shared API's replicas are restarted one at a time, 10 minutes apart, for an upgrade; every cluster is fine",
		shared: &plan{
			start: "2026-01-24T06:00:00+01:00", span: 90 * minute,
			demand: func(time.Duration) float64 { return quiet }, traffic: steady,
			replicaChanges: []change{{0, 3}},
			restarts:       []restart{{30 * minute, 0}, {40 * minute, 1}, {50 * minute, 2}},
			events: []scripted{
				{30 * minute, "replica_restart", "regional-api-0"},
				{40 * minute, "replica_restart", "regional-api-1"},
				{50 * minute, "replica_restart", "regional-api-2"},
				{52 * minute, Recovered, "every replica upgraded"},
			},
		},
	},
	{
		name:    "regional-cluster-oom",
		summary: "lookalike: one cluster's own API server is OOM-killed (the single-cluster incident) in a healthy region: a cluster incident, not a regional one",
		shared: &plan{
			start: "2026-01-14T23:18:00+01:00", span: 100 * minute,
			demand: func(time.Duration) float64 { return quiet }, traffic: steady,
			replicaChanges: []change{{0, 3}},
		},
		member: func(i, n int) *plan {
			if i == n/2 {
				return lookup1("incident")
			}
			return nil
		},
		expectIncident: true, scope: ScopeCluster, rootCause: "apiserver_oom", expectGuard: true,
	},
	{
		name:    "regional-independent-failures",
		summary: "lookalike: three clusters lose their nodes one at a time, 25 minutes apart, each for 8 minutes; the shared API is healthy",
		shared: &plan{
			start: "2026-01-20T10:00:00+01:00", span: 100 * minute,
			demand: func(time.Duration) float64 { return quiet }, traffic: steady,
			replicaChanges: []change{{0, 3}},
			events: []scripted{
				{20 * minute, "cluster_cut_off", "the first cluster's nodes cut off"},
				{45 * minute, "cluster_cut_off", "a second cluster's nodes cut off"},
				{70 * minute, "cluster_cut_off", "a third cluster's nodes cut off"},
			},
		},
		member: func(i, n int) *plan {
			for k, at := range []time.Duration{20 * minute, 45 * minute, 70 * minute} {
				if i == k*n/3 {
					return cutOff("2026-01-20T10:00:00+01:00", at)
				}
			}
			return nil
		},
	},
	{
		name:    "regional-traffic-surge",
		summary: "lookalike: batch clients list pods through the shared gateway at six times its usual rate for 20 minutes; the shared API serves them, every cluster is fine",
		shared: &plan{
			start: "2026-01-22T15:00:00+01:00", span: 100 * minute,
			demand: func(at time.Duration) float64 {
				return quiet + bump(at, 40*minute, 10*minute, 60*minute, 10*minute, 0.1)
			},
			traffic: func(at time.Duration) (float64, float64, float64) {
				return 1, 1, 1 + bump(at, 40*minute, time.Minute, 60*minute, time.Minute, 30)
			},
			replicaChanges: []change{{0, 3}},
			events: []scripted{
				{40 * minute, "surge_start", "batch clients list pods at 6x the shared gateway's usual rate"},
				{60 * minute, "surge_end", ""},
			},
		},
	},
	{
		name:    "regional-zone-partition",
		summary: "lookalike: one zone of three loses its network in one cluster for 15 minutes; the region is fine",
		shared: &plan{
			start: "2026-01-21T09:30:00+01:00", span: 100 * minute,
			demand: func(time.Duration) float64 { return quiet }, traffic: steady,
			replicaChanges: []change{{0, 3}},
		},
		member: func(i, n int) *plan {
			if i == n/3 {
				return lookup1("zone-partition")
			}
			return nil
		},
	},
}

// Scopes of an expected incident.
const (
	ScopeCluster = "cluster"
	ScopeRegion  = "region"
)

// lookup1 is a single-cluster plan by name, for a region's member.
func lookup1(name string) *plan {
	for _, p := range plans {
		if p.name == name {
			return p
		}
	}
	panic("scenario: no single-cluster plan " + name)
}

func lookupRegion(name string) *regionPlan {
	for _, p := range regionPlans {
		if p.name == name {
			return p
		}
	}
	return nil
}

// regionSim is one run of a regional plan: the shared API (a sim without
// nodes, its series labelled shared), the shared gateway every cluster's
// kubelets go through, and one sim per cluster.
type regionSim struct {
	rp       *regionPlan
	o        Options
	store    *store
	shared   *sim
	clusters []*sim
	hit      []string // clusters whose kubelets the shared API authenticates and fails
	incident string   // the cluster with an incident of its own, if any
}

func newRegionSim(rp *regionPlan, o Options) *regionSim {
	st := newStore()
	start, err := time.Parse(time.RFC3339, rp.shared.start)
	if err != nil {
		panic(fmt.Sprintf("scenario %s: bad start: %v", rp.name, err))
	}
	if !o.Start.IsZero() {
		start = o.Start
	}
	r := &regionSim{rp: rp, o: o, store: st}
	gw := newGateway(st, target{"region", o.Region, "shared", sharedGateway, "instance", "regional-gateway-exporter:9847", "job", "cascade"})
	sharedOpts := o
	sharedOpts.Start, sharedOpts.Nodes = start, 0
	r.shared = newSimIn(rp.shared, sharedOpts, simEnv{
		store: st, rng: rand.New(rand.NewPCG(o.Seed, 0x5ca1ab1e)),
		labels: []string{"region", o.Region, "shared", sharedAPI}, instance: "regional-", gw: gw,
	})
	for i, rep := range r.shared.replicas {
		rep.name = fmt.Sprintf("%s-%d", sharedAPI, i)
	}
	order := rand.New(rand.NewPCG(o.Seed, 0x0c1a55e5)).Perm(o.Clusters)
	hit := make([]bool, o.Clusters)
	if r.shared.p.failure != nil {
		for _, i := range order[:int(rp.hitShare*float64(o.Clusters)+0.5)] {
			hit[i] = true
		}
	}
	for i := range o.Clusters {
		name := clusterName(i, o.Clusters)
		p := healthyMember(rp.shared.start)
		if rp.member != nil {
			if own := rp.member(i, o.Clusters); own != nil {
				p = own
				if own.expectIncident {
					r.incident = name
				}
			}
		}
		mo := o
		mo.Start, mo.Cluster = start, name
		c := newSimIn(p, mo, simEnv{
			store: st, rng: rand.New(rand.NewPCG(o.Seed, uint64(i)+1)),
			labels: []string{"region", o.Region, "cluster", name}, instance: name + "-", gw: gw,
		})
		if hit[i] {
			c.src = r.shared
			c.failDelay = c.rng.Float64() * 30
			r.hit = append(r.hit, name)
		}
		r.clusters = append(r.clusters, c)
	}
	return r
}

func clusterName(i, n int) string {
	return fmt.Sprintf("cluster-%0*d", len(fmt.Sprint(n-1)), i)
}

func (r *regionSim) run() {
	s := r.shared
	step := r.o.Interval.Seconds()
	steps := int(s.p.span.Seconds() / step)
	for k := 0; k <= steps; k++ {
		t := s.start + float64(k)*step
		s.stepAPIServers(t, step)
		var failing, alive, replaced, nodes float64
		for _, c := range r.clusters {
			c.stepAPIServers(t, step)
			c.stepNodes(t+offsetNodeLease+c.jitter(), step)
			c.replacedShare = float64(c.replaced) / float64(len(c.nodes))
			if c.src == s {
				failing += c.failingShare * float64(c.alive)
				alive += float64(c.alive)
			}
			replaced += float64(c.replaced)
			nodes += float64(len(c.nodes))
		}
		if alive > 0 {
			s.failingShare = failing / alive
		}
		s.replacedShare = replaced / nodes
		s.trafficScale = float64(len(r.clusters)) / 4
		s.stepGateway(t, step)
	}
}

// truth is the region's: the shared API's scripted events and first OOM,
// the clusters it hit, and what a detector should find.
func (r *regionSim) truth() Truth {
	s := r.shared
	start := time.UnixMilli(int64(s.start * 1000)).UTC()
	tr := Truth{
		Scenario: r.rp.name, Nodes: r.o.Nodes, Region: r.o.Region, Clusters: r.o.Clusters,
		Start: start, End: start.Add(s.p.span),
		ExpectIncident: r.rp.expectIncident, Scope: r.rp.scope, RootCause: r.rp.rootCause, ExpectGuard: r.rp.expectGuard,
	}
	for _, e := range s.p.events {
		tr.Events = append(tr.Events, Event{Time: start.Add(e.at), Name: e.name, Detail: e.detail})
	}
	if r.rp.scope == ScopeRegion {
		tr.Shared = sharedAPI
		tr.ClustersHit = r.hit
	}
	if s.firstOOM != 0 {
		tr.Events = append(tr.Events, Event{Time: time.UnixMilli(int64(s.firstOOM * 1000)).UTC(), Name: FirstOOM, Detail: "first shared API replica OOM-killed"})
	}
	if r.incident != "" {
		tr.Cluster = r.incident
		tr.ClustersHit = []string{r.incident}
		for _, c := range r.clusters {
			if c.o.Cluster == r.incident && c.firstOOM != 0 {
				tr.Events = append(tr.Events, Event{Time: time.UnixMilli(int64(c.firstOOM * 1000)).UTC(), Name: FirstOOM, Detail: "first API server replica of " + r.incident + " OOM-killed"})
			}
		}
	}
	if s.p.autoheal != nil {
		replaced := 0
		for _, c := range r.clusters {
			replaced += c.replaced
		}
		if replaced > 0 && s.firstOOM != 0 {
			tr.Events = append(tr.Events, Event{Time: time.UnixMilli(int64((s.firstOOM + s.p.autoheal.after.Seconds()) * 1000)).UTC(),
				Name: "autoheal_start", Detail: fmt.Sprintf("auto-healing replaces %d nodes that were only refused", replaced)})
		}
	}
	sortEvents(tr.Events)
	return tr
}
