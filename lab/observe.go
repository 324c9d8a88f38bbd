package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/lab/kubelet"
)

// clusterState is what the lab sees of one cluster's nodes at one moment,
// from its own reads of the cluster's Leases and Nodes (not from Cascade).
type clusterState struct {
	// late: not renewed for a renew interval or more (the exporter's
	// "late"); stale: not fresh, late by more than a busy machine's 5 s;
	// expired: not renewed for the lease's whole duration (the node
	// lifecycle controller's grace period is a little longer).
	leases, fresh, late, stale, expired int
	nodes, notReady                     int
	// firstNotReady is the earliest Ready transition away from True, as
	// the node lifecycle controller stamped it.
	firstNotReady time.Time
}

// observer reads one cluster's Leases and Nodes every two seconds with the
// admin's credentials (straight from the API server's watch cache) and
// turns them into real events: leases late and expiring, nodes marked
// NotReady by the node lifecycle controller, the cluster recovered. While
// the API server is down it keeps the last answer, which is still the
// truth about leases: nobody could renew them. It polls rather than
// watches so that it is current two seconds after the API server is back,
// where a watch would wait out its reflector's back-off.
type observer struct {
	cluster string
	tl      *timeline
	client  kubernetes.Interface

	mu sync.Mutex
	// leases and nodes are the last successful reads.
	leases []coordinationv1.Lease
	nodes  []corev1.Node
	read   bool
	expect int
	// ignore are nodes lost on purpose (the region's dry run).
	ignore map[string]bool
	armed  bool
	// hit: since arming, half the leases went stale, a lease expired or a
	// node was marked NotReady; only then can the cluster recover.
	hit  bool
	done map[string]bool
	// healthySince is when the current healthy streak began.
	healthySince time.Time
}

// recoveredFor is how long a cluster must stay healthy to count as
// recovered: an API server back for a few seconds between two OOM kills
// lets every kubelet renew once, and that is no recovery.
const recoveredFor = 30 * time.Second

// observerInterval is how often the observers read.
const observerInterval = 2 * time.Second

func newObserver(ctx context.Context, cluster string, expect int, client kubernetes.Interface, tl *timeline) *observer {
	o := &observer{cluster: cluster, expect: expect, tl: tl, client: client, ignore: map[string]bool{}, done: map[string]bool{}}
	go func() {
		o.poll(ctx)
		every(ctx, observerInterval, func(time.Time) { o.poll(ctx) })
	}()
	return o
}

// poll reads leases and nodes once; a failed read keeps the last one.
func (o *observer) poll(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, observerInterval)
	defer cancel()
	cached := metav1.ListOptions{ResourceVersion: "0"}
	leases, err := o.client.CoordinationV1().Leases("kube-node-lease").List(rctx, cached)
	if err != nil {
		return
	}
	nodes, err := o.client.CoreV1().Nodes().List(rctx, cached)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.leases, o.nodes, o.read = leases.Items, nodes.Items, true
}

// state counts leases and nodes now.
func (o *observer) state(now time.Time) clusterState {
	o.mu.Lock()
	ignore, leases, nodes := o.ignore, o.leases, o.nodes
	o.mu.Unlock()
	var s clusterState
	for i := range leases {
		l := &leases[i]
		if ignore[l.Name] || l.Spec.RenewTime == nil {
			continue
		}
		s.leases++
		age := now.Sub(l.Spec.RenewTime.Time)
		duration := time.Duration(kubelet.LeaseDurationSeconds) * time.Second
		if l.Spec.LeaseDurationSeconds != nil {
			duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		switch {
		case age >= duration:
			s.expired++
			s.late++
		case age >= kubelet.RenewInterval:
			s.late++
		}
		// Fresh allows for the lease controller's jitter and a busy
		// machine: a renewal late by less than 5 s is still on time.
		if age < kubelet.RenewInterval+5*time.Second {
			s.fresh++
		} else {
			s.stale++
		}
	}
	for i := range nodes {
		n := &nodes[i]
		if ignore[n.Name] {
			continue
		}
		s.nodes++
		for _, c := range n.Status.Conditions {
			if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
				continue
			}
			s.notReady++
			if s.firstNotReady.IsZero() || c.LastTransitionTime.Time.Before(s.firstNotReady) {
				s.firstNotReady = c.LastTransitionTime.Time
			}
		}
	}
	return s
}

// healthy: every expected node is Ready and has renewed its lease lately.
func (s clusterState) healthy(expect int) bool {
	return s.leases >= expect && s.fresh == s.leases && s.nodes >= expect && s.notReady == 0
}

// lose leaves a node out from now on: it was stopped on purpose.
func (o *observer) lose(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ignore := make(map[string]bool, len(o.ignore)+1)
	for k := range o.ignore {
		ignore[k] = true
	}
	ignore[node] = true
	o.ignore = ignore
	o.expect--
}

// arm starts turning states into events: from the fault on.
func (o *observer) arm() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.armed = true
}

// check records the events this state shows for the first time. It
// returns whether the cluster is healthy.
func (o *observer) check(now time.Time) bool {
	s := o.state(now)
	o.mu.Lock()
	armed, expect := o.armed, o.expect
	o.mu.Unlock()
	if !armed {
		return s.healthy(expect)
	}
	once := func(name string, at time.Time, format string, args ...any) {
		o.mu.Lock()
		seen := o.done[name]
		o.done[name] = true
		o.mu.Unlock()
		if !seen {
			o.tl.addAt(at, name, o.cluster, format, args...)
		}
	}
	markHit := func() {
		o.mu.Lock()
		o.hit = true
		o.mu.Unlock()
	}
	if s.leases > 0 && 2*s.stale >= s.leases {
		markHit()
	}
	if s.leases > 0 && 2*s.late >= s.leases {
		once(evLeasesLate50, now, "half the node leases late: not renewed for 10 s or more (%d of %d)", s.late, s.leases)
	}
	if s.expired > 0 {
		markHit()
		once(evLeasesExpired1, now, "first node lease expired (%d of %d)", s.expired, s.leases)
	}
	if s.leases > 0 && 2*s.expired >= s.leases {
		once(evLeasesExpired50, now, "half the node leases expired (%d of %d)", s.expired, s.leases)
	}
	if s.notReady > 0 {
		markHit()
		once(evNotReady1, s.firstNotReady, "first node marked NotReady by the node lifecycle controller")
	}
	if s.nodes > 0 && 2*s.notReady >= s.nodes {
		once(evNotReady50, now, "half the nodes NotReady (%d of %d)", s.notReady, s.nodes)
	}
	healthy := s.healthy(expect)
	o.mu.Lock()
	if !healthy {
		o.healthySince = time.Time{}
	} else if o.healthySince.IsZero() {
		o.healthySince = now
	}
	since := o.healthySince
	o.mu.Unlock()
	if healthy && o.hitOnce() && now.Sub(since) >= recoveredFor {
		once(evClusterRecover, since, "recovered: all %d nodes Ready, every lease renewed, for %s since", s.nodes, recoveredFor)
	}
	return healthy
}

// waitRead waits for the first successful read.
func (o *observer) waitRead(ctx context.Context) error {
	if !waitUntil(ctx, time.Minute, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.read
	}) {
		return fmt.Errorf("%s: the lab could not read its leases and nodes", o.cluster)
	}
	return nil
}

// hitOnce reports whether this cluster's nodes failed since arming.
func (o *observer) hitOnce() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hit
}
