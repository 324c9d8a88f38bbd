// Package scenario generates what Cascade's exporters would have exposed
// during a control-plane incident, or during one of its lookalikes, as
// OpenMetrics text with timestamps (the input of `cascade backtest` and of
// `promtool tsdb create-blocks-from openmetrics`), together with the ground
// truth of what was injected when.
//
// A scenario is a small simulation, not a recording: API server replicas
// whose working set follows a demand and is OOM-killed at its limit, nodes
// renewing their leases every 10 s (or failing to), a node lifecycle
// controller marking them Unknown, and a gateway counting the requests all
// of them make. Every scenario carries the noise of a real fleet: diurnal
// traffic, small deployment bursts, a node that really dies, scrape jitter.
// Regional scenarios simulate the seed's shape: many clusters of one
// region and a shared regional API that authenticates their kubelets, with
// its shared gateway (region.go).
//
// The same name, options and seed always give the same bytes.
package scenario

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"
)

// Options shape the generated fleet.
type Options struct {
	// Nodes is the fleet size, 1 to MaxNodes (default 500); in a regional
	// scenario, the nodes of each cluster (default DefaultClusterNodes).
	Nodes int
	// Cluster is the value of the cluster label (default "demo"); regional
	// scenarios name their clusters cluster-000, cluster-001…
	Cluster string
	// Region is the value of the region label: none by default, and
	// DefaultRegion for regional scenarios.
	Region string
	// Clusters is the number of clusters of a regional scenario, 1 to
	// MaxClusters (default DefaultClusters); single-cluster scenarios take
	// 0 or 1.
	Clusters int
	// Start moves the scenario to another day; zero keeps its own start
	// (the incident starts at 23:18 CET, half an hour before its OOM).
	Start time.Time
	// Interval is the scrape interval (default 15 s).
	Interval time.Duration
	// Seed picks the noise; the same seed gives the same data.
	Seed uint64
	// NoPerNodeSeries leaves out the per-node lease series, as the
	// exporter's --no-nodelease.per-node-series does for huge fleets.
	NoPerNodeSeries bool
}

// MaxNodes is the largest fleet a scenario simulates.
const MaxNodes = 5000

// MinInterval and MaxInterval bound the scrape interval of the series.
const (
	MinInterval = time.Second
	MaxInterval = 5 * time.Minute
)

// Event is one injected fault, or the end of recovery.
type Event struct {
	Time   time.Time `json:"time"`
	Name   string    `json:"name"`
	Detail string    `json:"detail,omitempty"`
}

// Truth is what a detector should find in a scenario's data.
type Truth struct {
	Scenario string `json:"scenario"`
	// Nodes is the fleet size; in a region, the nodes of each cluster.
	Nodes int `json:"nodes"`
	// Cluster is the cluster of a single-cluster scenario, or the cluster
	// of a region expected to have an incident of its own.
	Cluster  string    `json:"cluster,omitempty"`
	Region   string    `json:"region,omitempty"`
	Clusters int       `json:"clusters,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// ExpectIncident says an incident must open, of Scope ("cluster" or
	// "region") with RootCause, naming Shared for a regional one.
	ExpectIncident bool   `json:"expect_incident"`
	Scope          string `json:"scope,omitempty"`
	RootCause      string `json:"root_cause"`
	Shared         string `json:"shared,omitempty"`
	// ClustersHit are the clusters whose nodes the fault fails: the guard
	// must come on in each.
	ClustersHit []string `json:"clusters_hit,omitempty"`
	// ExpectGuard says whether the auto-heal guard should come on: leases
	// expire fleet-wide because of the control plane.
	ExpectGuard bool    `json:"expect_guard"`
	Events      []Event `json:"events"`
}

// Event returns the first event of that name.
func (t Truth) Event(name string) (Event, bool) {
	for _, e := range t.Events {
		if e.Name == name {
			return e, true
		}
	}
	return Event{}, false
}

// Names of the events every detector reads.
const (
	FirstOOM  = "first_oom"
	Recovered = "recovered"
)

// Info names and describes a scenario.
type Info struct {
	Name    string
	Summary string
	// Incident is true for the scenarios that must open an incident.
	Incident bool
	// Regional is true for the scenarios of a region with shared
	// components; Scope is that of their expected incident.
	Regional bool
	Scope    string
}

// List returns every scenario: the single-cluster ones, then the regional
// ones, incidents first in each.
func List() []Info {
	var out []Info
	for _, p := range plans {
		info := Info{Name: p.name, Summary: p.summary, Incident: p.expectIncident}
		if p.expectIncident {
			info.Scope = ScopeCluster
		}
		out = append(out, info)
	}
	for _, p := range regionPlans {
		out = append(out, Info{Name: p.name, Summary: p.summary, Incident: p.expectIncident, Regional: true, Scope: p.scope})
	}
	return out
}

// Generate writes the scenario's data to w as OpenMetrics text and returns
// its ground truth. Nothing is written when the name or options are wrong.
func Generate(w io.Writer, name string, opts Options) (Truth, error) {
	if rp := lookupRegion(name); rp != nil {
		if err := opts.normaliseRegion(); err != nil {
			return Truth{}, err
		}
		r := newRegionSim(rp, opts)
		r.run()
		if err := r.store.writeOpenMetrics(w); err != nil {
			return Truth{}, err
		}
		return r.truth(), nil
	}
	p, err := lookup(name)
	if err != nil {
		return Truth{}, err
	}
	if err := opts.normalise(); err != nil {
		return Truth{}, err
	}
	s := newSim(p, opts)
	s.run()
	if err := s.series.writeOpenMetrics(w); err != nil {
		return Truth{}, err
	}
	return s.truth(), nil
}

func lookup(name string) (*plan, error) {
	for _, p := range plans {
		if p.name == name {
			return p, nil
		}
	}
	names := make([]string, 0, len(plans)+len(regionPlans))
	for _, p := range plans {
		names = append(names, p.name)
	}
	for _, p := range regionPlans {
		names = append(names, p.name)
	}
	return nil, fmt.Errorf("unknown scenario %q (known: %v)", name, names)
}

func (o *Options) normalise() error {
	o.Nodes = cmp.Or(o.Nodes, 500)
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("nodes must be between 1 and %d, not %d", MaxNodes, o.Nodes)
	}
	o.Cluster = cmp.Or(o.Cluster, "demo")
	if o.Clusters > 1 {
		return fmt.Errorf("clusters: a single-cluster scenario has one cluster, not %d (the regional scenarios take more)", o.Clusters)
	}
	return o.normaliseInterval()
}

func (o *Options) normaliseInterval() error {
	o.Interval = cmp.Or(o.Interval, 15*time.Second)
	if o.Interval < MinInterval || o.Interval > MaxInterval {
		return fmt.Errorf("interval must be between %s and %s, not %s", MinInterval, MaxInterval, o.Interval)
	}
	return nil
}

func (o *Options) normaliseRegion() error {
	o.Clusters = cmp.Or(o.Clusters, DefaultClusters)
	o.Nodes = cmp.Or(o.Nodes, DefaultClusterNodes)
	o.Region = cmp.Or(o.Region, DefaultRegion)
	switch {
	case o.Clusters < 1 || o.Clusters > MaxClusters:
		return fmt.Errorf("clusters must be between 1 and %d, not %d", MaxClusters, o.Clusters)
	case o.Nodes < 1 || o.Clusters*o.Nodes > MaxRegionNodes:
		return fmt.Errorf("a region holds 1 to %d nodes in all, not %d clusters of %d", MaxRegionNodes, o.Clusters, o.Nodes)
	case o.Clusters*o.Nodes > MaxNodes && !o.NoPerNodeSeries:
		return fmt.Errorf("%d nodes in all: above %d, leave out the per-node series (NoPerNodeSeries, --no-per-node-series)", o.Clusters*o.Nodes, MaxNodes)
	}
	return o.normaliseInterval()
}

// sortEvents orders events by time, then name, for stable output.
func sortEvents(events []Event) {
	slices.SortStableFunc(events, func(a, b Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Name, b.Name))
	})
}
