package main

import (
	"math"
	"strconv"
	"time"

	"github.com/cascade-sre/cascade/internal/contract"
)

// A region target serves, "now", what a provider's collector scrapes from a
// whole region (rules/README.md, "Regions and shared components"), through
// one target whose series carry their own region, cluster and shared
// labels: for each cluster of regionNodes nodes, its own API server's
// memory and the lease exporter's aggregate series (per-node series off, as
// at provider scale); and the shared regional API (three replicas) and the
// shared gateway in front of it.
//
// Healthy, every cluster is fine. In the seed's incident, the shared API is
// OOM-killed faultAfter the start and every 2 minutes after; its gateway
// answers the kubelets 401 from then on; the leases of three clusters in
// four expire and their nodes go unknown: the regional incident, the guard
// of every hit cluster and a NodeLeasesExpiringFleetWide each fire all
// along, the heaviest evaluation the rules know (every active alert's
// templates are expanded at every evaluation).
type regionSpec struct {
	clusters   int
	incident   bool
	faultAfter time.Duration
}

const (
	regionName        = "fr-par"
	regionNodes       = 50
	sharedAPI         = "regional-api"
	sharedGateway     = "regional-gateway"
	sharedAPIReplicas = 3
	oomEvery          = 2 * time.Minute
)

// hit says whether the fault hits cluster i.
func (r regionSpec) hit(i int) bool { return r.incident && i%4 < 3 }

func (f *fleet) appendRegion(b []byte, now time.Time) []byte {
	r := f.region
	t := float64(now.UnixNano()) / 1e9
	sinceFault := now.Sub(f.start) - r.faultAfter
	faulted := r.incident && sinceFault >= 0
	family := func(m contract.Metric) { b = append(b, m.Header()...) }
	sample := func(name string, labels []byte, extra string, v float64) {
		b = append(b, name...)
		b = append(b, '{')
		b = append(b, labels...)
		if extra != "" {
			b = append(b, ',')
			b = append(b, extra...)
		}
		b = append(b, "} "...)
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
		b = append(b, '\n')
	}
	clusters := make([][]byte, r.clusters)
	for i := range clusters {
		clusters[i] = clusterLabels(i)
	}
	api, gw := sharedLabels(sharedAPI), sharedLabels(sharedGateway)
	apiReplica := func(k int) string { return `replica="` + sharedAPI + `-` + strconv.Itoa(k) + `"` }
	const ownReplica = `replica="kube-apiserver-0"`

	// API server memory: each cluster's own, then the shared API's.
	family(contract.APIServerWorkingSet)
	for i, l := range clusters {
		sample(contract.APIServerWorkingSet.Name, l, ownReplica, math.Round((0.4+0.002*float64(i%50))*memoryLimitBytes))
	}
	for k := range sharedAPIReplicas {
		share := 0.55
		if faulted {
			share = 0.97
		}
		sample(contract.APIServerWorkingSet.Name, api, apiReplica(k), math.Round(share*memoryLimitBytes))
	}
	family(contract.APIServerLimit)
	for _, l := range clusters {
		sample(contract.APIServerLimit.Name, l, ownReplica, memoryLimitBytes)
	}
	for k := range sharedAPIReplicas {
		sample(contract.APIServerLimit.Name, api, apiReplica(k), memoryLimitBytes)
	}
	kills := 0.0
	if faulted {
		kills = 1 + math.Floor(sinceFault.Seconds()/oomEvery.Seconds())
	}
	for _, m := range []contract.Metric{contract.APIServerOOMKills, contract.APIServerRestarts} {
		family(m)
		for _, l := range clusters {
			sample(m.Name, l, ownReplica, 0)
		}
		for k := range sharedAPIReplicas {
			sample(m.Name, api, apiReplica(k), kills)
		}
	}
	family(contract.APIServerUp)
	for _, l := range clusters {
		sample(contract.APIServerUp.Name, l, ownReplica, 1)
	}
	for k := range sharedAPIReplicas {
		sample(contract.APIServerUp.Name, api, apiReplica(k), 1)
	}

	// Leases and nodes, per cluster: a hit cluster's kubelets stop renewing
	// 15 s after the fault; a lease is late after 10 s more and expired
	// after its 40 s; the node lifecycle controller marks the nodes unknown
	// after its 50 s grace.
	stopped := (sinceFault - 15*time.Second).Seconds()
	family(contract.NodeLeaseWatchUp)
	for _, l := range clusters {
		sample(contract.NodeLeaseWatchUp.Name, l, "", 1)
	}
	family(contract.NodeLeaseWatchLastEvent)
	for _, l := range clusters {
		sample(contract.NodeLeaseWatchLastEvent.Name, l, "", math.Round(t*1000)/1000)
	}
	family(contract.NodeLeases)
	for i, l := range clusters {
		fresh, late, expired := float64(regionNodes), 0.0, 0.0
		if r.hit(i) && stopped >= leaseDurationSeconds {
			fresh, late, expired = 5, 0, regionNodes-5
		} else if r.hit(i) && stopped >= leaseRenewSeconds {
			fresh, late = 5, regionNodes-5
		}
		sample(contract.NodeLeases.Name, l, `state="`+contract.LeaseFresh+`"`, fresh)
		sample(contract.NodeLeases.Name, l, `state="`+contract.LeaseLate+`"`, late)
		sample(contract.NodeLeases.Name, l, `state="`+contract.LeaseExpired+`"`, expired)
	}
	family(contract.Nodes)
	for i, l := range clusters {
		ready, unknown := float64(regionNodes), 0.0
		if r.hit(i) && stopped >= 50 {
			ready, unknown = 5, regionNodes-5
		}
		sample(contract.Nodes.Name, l, `condition="`+contract.NodeReady+`"`, ready)
		sample(contract.Nodes.Name, l, `condition="`+contract.NodeNotReady+`"`, 0)
		sample(contract.Nodes.Name, l, `condition="`+contract.NodeUnknown+`"`, unknown)
	}

	// The shared gateway: every cluster's traffic, counters from the rates
	// over the time since the start with an hour of history before it;
	// from the fault, the hit clusters' kubelets retrying their lease
	// renewals and refused 401.
	seconds := now.Sub(f.start).Seconds() + 3600
	nodes := float64(r.clusters * regionNodes)
	family(contract.GatewayRequests)
	var lines float64
	for _, s := range streams {
		n := math.Floor((s.perSecond*float64(r.clusters)/10 + s.perNodeSecond*nodes) * seconds)
		lines += n
		sample(contract.GatewayRequests.Name, gw, `route="`+s.route+`",method="`+s.method+`",code="`+s.code+`",client="`+s.client+`"`, n)
	}
	refused := 0.0
	if faulted {
		// each failing kubelet: 5 immediate retries every 10 s
		refused = math.Floor(nodes * 3 / 4 * 0.5 * sinceFault.Seconds())
	}
	lines += refused
	sample(contract.GatewayRequests.Name, gw, `route="`+routeLease+`",method="PUT",code="401",client="kubelet"`, refused)
	family(contract.GatewayLogLines)
	sample(contract.GatewayLogLines.Name, gw, `result="parsed"`, lines)
	sample(contract.GatewayLogLines.Name, gw, `result="malformed"`, 0)
	return b
}

func clusterLabels(i int) []byte {
	return []byte(`region="` + regionName + `",cluster="cluster-` + strconv.Itoa(10000 + i)[1:] + `"`)
}

func sharedLabels(name string) []byte {
	return []byte(`region="` + regionName + `",shared="` + name + `"`)
}
