package main

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fleetAt is n leases renewed at renewed and n nodes, the first notReady of
// them marked NotReady at markedAt.
func fleetAt(n int, renewed time.Time, notReady int, markedAt time.Time) ([]coordinationv1.Lease, []corev1.Node) {
	leases := make([]coordinationv1.Lease, n)
	nodes := make([]corev1.Node, n)
	for i := range n {
		name := "node-" + string(rune('a'+i))
		leases[i].Name = name
		leases[i].Spec.RenewTime = &metav1.MicroTime{Time: renewed}
		nodes[i].Name = name
		ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}
		if i < notReady {
			ready.Status = corev1.ConditionUnknown
			ready.LastTransitionTime = metav1.Time{Time: markedAt.Add(time.Duration(i) * time.Second)}
		}
		nodes[i].Status.Conditions = []corev1.NodeCondition{ready}
	}
	return leases, nodes
}

func testObserver(expect int) (*observer, *timeline) {
	tl := newTimeline(&bytes.Buffer{})
	return &observer{cluster: "cluster-1", expect: expect, tl: tl, ignore: map[string]bool{}, done: map[string]bool{}}, tl
}

func (o *observer) set(leases []coordinationv1.Lease, nodes []corev1.Node) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.leases, o.nodes = leases, nodes
}

func names(tl *timeline) []string {
	var out []string
	for _, e := range tl.all() {
		out = append(out, e.Name)
	}
	return out
}

// The lab's own reading of a cluster: leases late, expired, nodes marked
// NotReady (at the controller's time), each recorded once and only after
// the fault; recovery only after a hit and 30 s healthy.
func TestObserverEvents(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 23, 48, 0, 0, time.UTC)
	o, tl := testObserver(4)

	o.set(fleetAt(4, t0, 0, time.Time{}))
	require.True(t, o.check(t0.Add(time.Second)), "renewed a second ago, all Ready")
	o.set(fleetAt(4, t0, 0, time.Time{}))
	require.False(t, o.check(t0.Add(time.Minute)), "a minute without renewal")
	require.Empty(t, names(tl), "nothing recorded before the fault")

	o.arm()
	o.set(fleetAt(4, t0, 0, time.Time{}))
	require.True(t, o.check(t0.Add(5*time.Second)))
	require.False(t, o.hitOnce())

	require.True(t, o.check(t0.Add(12*time.Second)), "late by less than 5 s is still healthy")
	require.Equal(t, []string{evLeasesLate50}, names(tl), "late, not yet stale")
	require.False(t, o.hitOnce(), "a renewal late by less than 5 s is no hit")

	require.False(t, o.check(t0.Add(16*time.Second)))
	require.True(t, o.hitOnce(), "stale: every lease late by more than 5 s")

	marked := t0.Add(45 * time.Second)
	o.set(fleetAt(4, t0, 2, marked))
	require.False(t, o.check(t0.Add(50*time.Second)))
	require.False(t, o.check(t0.Add(52*time.Second)))
	require.Equal(t, []string{evLeasesLate50, evNotReady1, evLeasesExpired1, evLeasesExpired50, evNotReady50}, names(tl), "each once, in time order")
	require.Equal(t, marked, tl.first(evNotReady1, "cluster-1"), "as the node lifecycle controller stamped it")

	// Back: healthy, but recovered only after 30 s of it.
	back := t0.Add(2 * time.Minute)
	o.set(fleetAt(4, back, 0, time.Time{}))
	require.True(t, o.check(back.Add(time.Second)))
	require.True(t, tl.first(evClusterRecover, "*").IsZero())
	o.set(fleetAt(4, back.Add(10*time.Second), 0, time.Time{}))
	require.True(t, o.check(back.Add(15*time.Second)))
	o.set(fleetAt(4, back.Add(30*time.Second), 0, time.Time{}))
	require.True(t, o.check(back.Add(32*time.Second)))
	require.Equal(t, back.Add(time.Second), tl.first(evClusterRecover, "cluster-1"), "recovered since the healthy streak began")
	require.Equal(t, 1, tl.count(evClusterRecover))
}

// A node stopped on purpose (the region's dry run) is neither expected nor
// counted: its expiring lease is no event, the rest is healthy.
func TestObserverIgnoresLostNode(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 23, 48, 0, 0, time.UTC)
	o, tl := testObserver(4)
	o.arm()
	leases, nodes := fleetAt(4, t0.Add(time.Minute), 1, t0.Add(50*time.Second))
	leases[0].Spec.RenewTime = &metav1.MicroTime{Time: t0}
	o.lose(leases[0].Name)
	o.set(leases, nodes)
	require.True(t, o.check(t0.Add(61*time.Second)))
	require.Empty(t, names(tl))
	s := o.state(t0.Add(61 * time.Second))
	require.Equal(t, clusterState{leases: 3, fresh: 3, nodes: 3}, s)
}

// A healthy cluster that was never hit does not "recover": a dry run has no
// recovery to report.
func TestObserverNoRecoveryWithoutHit(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 23, 48, 0, 0, time.UTC)
	o, tl := testObserver(2)
	o.arm()
	for i := range 10 {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		o.set(fleetAt(2, now, 0, time.Time{}))
		require.True(t, o.check(now.Add(time.Second)))
	}
	require.Empty(t, names(tl))
}

// The burst retries each object until it is accepted, counting retries,
// and stops when its context ends.
func TestDeployRetriesUntilAccepted(t *testing.T) {
	p := deployPlan{Deployers: 3, Objects: 2, ObjectBytes: 4 << 10}
	var mu sync.Mutex
	tries := map[[2]int]int{}
	res, done := deploy(t.Context(), p, func(_ context.Context, d, o int, payload string) error {
		assert.Len(t, payload, p.ObjectBytes, "base64 of three quarters of the size")
		mu.Lock()
		defer mu.Unlock()
		tries[[2]int{d, o}]++
		if d == 1 && o == 0 && tries[[2]int{d, o}] == 1 {
			return errors.New("the API server is down")
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the burst did not finish")
	}
	require.EqualValues(t, 6, res.accepted.Load())
	require.EqualValues(t, 1, res.retries.Load())
	require.Len(t, tries, 6)

	ctx, cancel := context.WithCancel(t.Context())
	res, done = deploy(ctx, p, func(context.Context, int, int, string) error { return errors.New("down") })
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the burst did not stop with its context")
	}
	require.Zero(t, res.accepted.Load())
}
