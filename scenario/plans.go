package scenario

import (
	"math"
	"time"
)

// plan is one scenario: what is injected, and when, as offsets from its
// start. Everything else (OOM kills, lease ages, node conditions, gateway
// counts) follows from the simulation.
type plan struct {
	name, summary string
	// start is the scenario's own start (RFC 3339); span its length.
	start string
	span  time.Duration

	expectIncident bool
	rootCause      string
	expectGuard    bool

	// demand is the API servers' memory demand at an offset, as a share of
	// the original limit per original replica (0.55 is a quiet evening),
	// before the retry load the simulation adds while kubelets fail.
	demand func(at time.Duration) float64
	// traffic multiplies the controllers', kubectl's and other clients'
	// request rates (diurnal noise is applied on top).
	traffic func(at time.Duration) (controller, kubectl, other float64)

	limitChanges   []change // the memory limit, as a factor of the original
	replicaChanges []change // the number of replicas
	restarts       []restart

	deaths    []death
	partition *partition
	// failure: the control plane stops serving the kubelets after the
	// first OOM kill, until they recover one by one.
	failure  *failure
	autoheal *autoheal

	// events are the scripted ones; first_oom comes from the simulation.
	events []scripted
}

type change struct {
	at    time.Duration
	value float64
}

type restart struct {
	at      time.Duration
	replica int
}

// death kills the node at a fraction of the fleet's index range (so the same
// scenario picks comparable nodes at any size); back 0 means never.
type death struct {
	at, back time.Duration
	node     float64
}

// partition cuts one zone of three (or allZones) off the control plane and
// the gateway.
type partition struct {
	from, to time.Duration
	zone     int
}

// allZones as a partition's zone cuts every node off.
const allZones = -1

// failure describes the control plane failing the kubelets.
type failure struct {
	// onset spreads the kubelets' first failed renewals after the first OOM.
	onset time.Duration
	// recoverFrom and recoverSpan: kubelets recover one by one in this window.
	recoverFrom, recoverSpan time.Duration
	// retryLoad is the memory demand the failing kubelets' retries add at
	// full failure.
	retryLoad float64
}

// autoheal replaces nodes that look dead while the control plane fails.
type autoheal struct {
	after    time.Duration // after the first OOM
	duration time.Duration
	fraction float64 // of the fleet replaced at most
}

type scripted struct {
	at     time.Duration
	name   string
	detail string
}

const (
	quiet  = 0.55 // working set share of the limit on a quiet evening
	minute = time.Minute
)

// ramp goes linearly from a to b between offsets from and to, and holds.
func ramp(at, from, to time.Duration, a, b float64) float64 {
	switch {
	case at <= from:
		return a
	case at >= to:
		return b
	}
	return a + (b-a)*float64(at-from)/float64(to-from)
}

// bump rises from 0 to height between from and from+rise, holds, and falls
// back to 0 over fall after to.
func bump(at, from, rise, to, fall time.Duration, height float64) float64 {
	if at < to {
		return ramp(at, from, from+rise, 0, height)
	}
	return ramp(at, to, to+fall, height, 0)
}

func steady(time.Duration) (float64, float64, float64) { return 1, 1, 1 }

// CET is the time zone of the public timeline.
var cet = time.FixedZone("CET", 3600)

var plans = []*plan{
	{
		name:    "incident",
		summary: "the public incident: memory climbs under simultaneous deployments, OOM at 23:48, leases fail fleet-wide, kubelet retries flood the gateway, limit raised and replicas added at 00:36-00:38, recovery by 01:13",
		start:   "2026-01-14T23:18:00+01:00", span: 132 * minute,
		expectIncident: true, rootCause: "apiserver_oom", expectGuard: true,
		demand: func(at time.Duration) float64 {
			// deployments from 23:27 add 0.022 of the limit a minute until
			// the operators pause them at 00:30; they drain by 00:45.
			return quiet + bump(at, 9*minute, 21*minute, 72*minute, 15*minute, 21*0.022)
		},
		traffic: func(at time.Duration) (float64, float64, float64) {
			// deployments, then engineers with kubectl during diagnosis
			return 1 + bump(at, 8*minute, 2*minute, 72*minute, 10*minute, 2), 1 + bump(at, 42*minute, 2*minute, 75*minute, 10*minute, 6), 1
		},
		limitChanges:   []change{{78 * minute, 2}},
		replicaChanges: []change{{0, 3}, {80 * minute, 5}},
		failure:        &failure{onset: 45 * time.Second, recoverFrom: 85 * minute, recoverSpan: 27 * minute, retryLoad: 0.6},
		deaths:         []death{{at: 55 * minute, node: 0.37}},
		events: []scripted{
			{9 * minute, "deployments_start", "simultaneous deployments across the region"},
			{78 * minute, "limit_raised", "API server memory limit doubled"},
			{80 * minute, "replicas_added", "API server replicas 3 → 5"},
			{55 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{115 * minute, Recovered, "every node renewing, gateway quiet"},
		},
	},
	{
		name:    "incident-autoheal",
		summary: "the second incident of the class: a faster memory climb to OOM, nodes NotReady, auto-healing replaces healthy nodes and their bootstrap traffic prolongs the outage",
		start:   "2026-02-03T14:05:00+01:00", span: 120 * minute,
		expectIncident: true, rootCause: "apiserver_oom", expectGuard: true,
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
		deaths:         []death{{at: 20 * minute, node: 0.81}},
		events: []scripted{
			{15 * minute, "load_climb", "API server memory demand climbs"},
			{64 * minute, "limit_raised", "API server memory limit doubled"},
			{66 * minute, "replicas_added", "API server replicas 3 → 5"},
			{20 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{100 * minute, Recovered, "every node renewing, replacements joined, gateway quiet"},
		},
	},
	{
		name:    "node-failure",
		summary: "lookalike: two nodes die (one for good, one reboots after 8 minutes); the control plane is healthy",
		start:   "2026-01-20T10:00:00+01:00", span: 120 * minute,
		demand:  func(time.Duration) float64 { return quiet },
		traffic: steady,
		deaths: []death{
			{at: 40 * minute, node: 0.12},
			{at: 43 * minute, back: 51 * minute, node: 0.66},
		},
		replicaChanges: []change{{0, 3}},
		events: []scripted{
			{40 * minute, "node_dies", "a node fails for good"},
			{43 * minute, "node_dies", "a node reboots"},
			{51 * minute, Recovered, "the rebooted node is back"},
		},
	},
	{
		name:    "zone-partition",
		summary: "lookalike: one zone of three loses its network path to the control plane for 15 minutes; a third of the leases expire",
		start:   "2026-01-21T09:30:00+01:00", span: 120 * minute,
		demand:  func(time.Duration) float64 { return quiet },
		traffic: steady, replicaChanges: []change{{0, 3}},
		partition: &partition{from: 45 * minute, to: 60 * minute, zone: 2},
		deaths:    []death{{at: 30 * minute, node: 0.5}},
		events: []scripted{
			{45 * minute, "zone_partitioned", "zone c cut off from the control plane"},
			{60 * minute, "zone_reconnected", "zone c reachable again"},
			{30 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{62 * minute, Recovered, "zone c nodes renewing"},
		},
	},
	{
		name:    "traffic-surge",
		summary: "lookalike: a batch system lists pods at five times the usual rate for 20 minutes; the API servers serve it",
		start:   "2026-01-22T15:00:00+01:00", span: 120 * minute,
		demand: func(at time.Duration) float64 {
			return quiet + bump(at, 50*minute, 10*minute, 70*minute, 10*minute, 0.1)
		},
		traffic: func(at time.Duration) (float64, float64, float64) {
			return 1, 1, 1 + bump(at, 50*minute, time.Minute, 70*minute, time.Minute, 25)
		},
		replicaChanges: []change{{0, 3}},
		deaths:         []death{{at: 20 * minute, node: 0.3}},
		events: []scripted{
			{50 * minute, "surge_start", "a batch client lists pods at 5x the gateway's usual rate"},
			{70 * minute, "surge_end", ""},
			{20 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{71 * minute, Recovered, ""},
		},
	},
	{
		name:    "memory-plateau",
		summary: "lookalike: API server memory climbs slowly for 50 minutes to 85 % of the limit and stays there; nothing is OOM-killed",
		start:   "2026-01-23T08:00:00+01:00", span: 120 * minute,
		demand: func(at time.Duration) float64 {
			return ramp(at, 10*minute, 60*minute, quiet, 0.85)
		},
		traffic: steady, replicaChanges: []change{{0, 3}},
		deaths: []death{{at: 70 * minute, node: 0.9}},
		events: []scripted{
			{10 * minute, "memory_climb", "working set climbs slowly"},
			{60 * minute, "memory_plateau", "working set holds at 85 % of the limit"},
			{70 * minute, "node_dies", "an unrelated node fails for good (noise)"},
		},
	},
	{
		name:    "rolling-restart",
		summary: "lookalike: the API server replicas are restarted one at a time, 10 minutes apart, for an upgrade",
		start:   "2026-01-24T06:00:00+01:00", span: 120 * minute,
		demand:  func(time.Duration) float64 { return quiet },
		traffic: steady, replicaChanges: []change{{0, 3}},
		restarts: []restart{{40 * minute, 0}, {50 * minute, 1}, {60 * minute, 2}},
		deaths:   []death{{at: 90 * minute, node: 0.2}},
		events: []scripted{
			{40 * minute, "replica_restart", "kube-apiserver-0"},
			{50 * minute, "replica_restart", "kube-apiserver-1"},
			{60 * minute, "replica_restart", "kube-apiserver-2"},
			{90 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{62 * minute, Recovered, "every replica upgraded"},
		},
	},
	{
		name:    "deploy-burst",
		summary: "lookalike: a normal burst of deployments for 12 minutes; memory and controller traffic rise and fall back",
		start:   "2026-01-26T11:00:00+01:00", span: 120 * minute,
		demand: func(at time.Duration) float64 {
			return quiet + bump(at, 45*minute, 8*minute, 57*minute, 10*minute, 0.15)
		},
		traffic: func(at time.Duration) (float64, float64, float64) {
			return 1 + bump(at, 45*minute, time.Minute, 57*minute, 5*minute, 3), 1 + bump(at, 45*minute, time.Minute, 57*minute, 5*minute, 2), 1
		},
		replicaChanges: []change{{0, 3}},
		deaths:         []death{{at: 15 * minute, node: 0.75}},
		events: []scripted{
			{45 * minute, "deploy_burst_start", "a release train deploys across namespaces"},
			{57 * minute, "deploy_burst_end", ""},
			{15 * minute, "node_dies", "an unrelated node fails for good (noise)"},
			{67 * minute, Recovered, ""},
		},
	},
}

// diurnal is the usual daily swing of human and controller traffic: +25 %
// at 15:00, -25 % at 03:00.
func diurnal(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	return 1 + 0.25*math.Sin(2*math.Pi*(h-9)/24)
}
