package nodelease

import (
	"container/heap"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/internal/contract"
)

// leaseState is how recently a lease was renewed, relative to its duration.
type leaseState int

const (
	stateFresh   leaseState = iota // age below a quarter of the duration (the renew interval)
	stateLate                      // renewal missed, not yet expired
	stateExpired                   // age at or above the duration
	numStates
)

var stateNames = contract.LeaseStates

// defaultLeaseDuration is what the kubelet sets; used when a lease carries none.
const defaultLeaseDuration = 40 * time.Second

// lease is what the exporter keeps of one Lease object.
type lease struct {
	name       string
	label      string // name escaped as a label value, for every scrape's text
	renewNanos int64  // renewTime in Unix nanoseconds; 0 when never renewed
	durationNs int64
	state      leaseState
	nextChange int64 // when state changes next, Unix ns; 0 once expired
	heapIndex  int   // position in leaseTracker.pending, -1 when not there
}

// classify returns the state of l at now and when that state ends (0: never).
func (l *lease) classify(now int64) (leaseState, int64) {
	if l.renewNanos == 0 {
		return stateExpired, 0
	}
	lateAt := l.renewNanos + l.durationNs/4
	expiredAt := l.renewNanos + l.durationNs
	switch {
	case now < lateAt:
		return stateFresh, lateAt
	case now < expiredAt:
		return stateLate, expiredAt
	default:
		return stateExpired, 0
	}
}

// leaseTracker keeps the count of leases in each state current without
// looking at every lease on every scrape: leases that will change state are
// kept in a min-heap by the time of their next change, so an event costs
// O(log n) and a scrape costs O(changes since the last scrape).
// It is not safe for concurrent use; the exporter holds its lock.
type leaseTracker struct {
	leases  map[string]*lease
	byName  []*lease // the same leases sorted by name, for stable output
	pending leaseHeap
	counts  [numStates]int
	now     int64 // the latest time the counts are correct for
	// steadyVersion changes whenever the leases' names or durations do:
	// what the duration family is written from.
	steadyVersion uint64
}

func newLeaseTracker() *leaseTracker {
	return &leaseTracker{leases: make(map[string]*lease)}
}

// upsert records a lease's renew time and duration as seen at now.
func (t *leaseTracker) upsert(name string, renewNanos, durationNs int64, now int64) {
	t.advance(now)
	l, ok := t.leases[name]
	if !ok {
		l = &lease{name: name, label: exporters.EscapeLabelValue(name), heapIndex: -1}
		t.leases[name] = l
		// Leases come and go with nodes, rarely: an O(n) insert is fine.
		i, _ := slices.BinarySearchFunc(t.byName, name, byName)
		t.byName = slices.Insert(t.byName, i, l)
		t.steadyVersion++
	} else {
		t.counts[l.state]--
		if l.durationNs != durationNs {
			t.steadyVersion++
		}
	}
	l.renewNanos, l.durationNs = renewNanos, durationNs
	l.state, l.nextChange = l.classify(t.now)
	t.counts[l.state]++
	t.reschedule(l)
}

// remove forgets a lease; it reports whether the lease was known.
func (t *leaseTracker) remove(name string) bool {
	l, ok := t.leases[name]
	if !ok {
		return false
	}
	t.counts[l.state]--
	if l.heapIndex >= 0 {
		heap.Remove(&t.pending, l.heapIndex)
	}
	delete(t.leases, name)
	t.steadyVersion++
	if i, found := slices.BinarySearchFunc(t.byName, name, byName); found {
		t.byName = slices.Delete(t.byName, i, i+1)
	}
	return true
}

func byName(l *lease, name string) int { return strings.Compare(l.name, name) }

// advance moves the counts forward to now. Time never goes backwards for the
// tracker: an earlier now is treated as the latest seen.
func (t *leaseTracker) advance(now int64) {
	if now < t.now {
		return
	}
	t.now = now
	for len(t.pending) > 0 && t.pending[0].nextChange <= now {
		l := t.pending[0]
		t.counts[l.state]--
		l.state, l.nextChange = l.classify(now)
		t.counts[l.state]++
		t.reschedule(l)
	}
}

// reschedule puts l where its nextChange says in the heap, or out of it.
func (t *leaseTracker) reschedule(l *lease) {
	switch {
	case l.nextChange == 0 && l.heapIndex >= 0:
		heap.Remove(&t.pending, l.heapIndex)
	case l.nextChange == 0:
	case l.heapIndex >= 0:
		heap.Fix(&t.pending, l.heapIndex)
	default:
		heap.Push(&t.pending, l)
	}
}

// leaseHeap orders leases by their next state change.
type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].nextChange < h[j].nextChange }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *leaseHeap) Push(x any) {
	l := x.(*lease)
	l.heapIndex = len(*h)
	*h = append(*h, l)
}
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.heapIndex = -1
	return l
}
