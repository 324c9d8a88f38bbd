package nodelease

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const sec = int64(time.Second)

func TestLeaseTrackerStates(t *testing.T) {
	tr := newLeaseTracker()
	now := 1000 * sec
	d := 40 * sec

	tr.upsert("fresh", now-5*sec, d, now)
	tr.upsert("late", now-10*sec, d, now) // exactly a quarter: late
	tr.upsert("expired", now-40*sec, d, now)
	tr.upsert("never", 0, d, now)
	require.Equal(t, [numStates]int{1, 1, 2}, tr.counts)

	// Time alone moves leases on, without any event.
	tr.advance(now + 5*sec)
	require.Equal(t, [numStates]int{0, 2, 2}, tr.counts)
	tr.advance(now + 30*sec)
	require.Equal(t, [numStates]int{0, 1, 3}, tr.counts)
	tr.advance(now + 35*sec)
	require.Equal(t, [numStates]int{0, 0, 4}, tr.counts)
	require.Empty(t, tr.pending, "expired leases leave the heap")

	// A renewal brings a lease back; time going backwards changes nothing.
	tr.upsert("late", now+35*sec, d, now+35*sec)
	tr.advance(now)
	require.Equal(t, [numStates]int{1, 0, 3}, tr.counts)

	require.True(t, tr.remove("late"))
	require.False(t, tr.remove("late"))
	require.Equal(t, [numStates]int{0, 0, 3}, tr.counts)
	require.Empty(t, tr.pending)
}

// TestLeaseTrackerMatchesFullScan drives random events and checks the
// incremental counts against classifying every lease from scratch.
func TestLeaseTrackerMatchesFullScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newLeaseTracker()
	now := 1_000_000 * sec
	for step := range 20000 {
		now += rng.Int64N(2 * sec)
		name := string(rune('a' + rng.IntN(50)))
		switch rng.IntN(10) {
		case 0:
			tr.remove(name)
		case 1:
			tr.advance(now)
		default:
			renew := now - rng.Int64N(60*sec)
			if rng.IntN(20) == 0 {
				renew = 0
			}
			tr.upsert(name, renew, (1+rng.Int64N(60))*sec, now)
		}
		require.Len(t, tr.byName, len(tr.leases))
		require.True(t, slices.IsSortedFunc(tr.byName, func(a, b *lease) int { return strings.Compare(a.name, b.name) }))
		var want [numStates]int
		for _, l := range tr.leases {
			s, _ := l.classify(tr.now)
			want[s]++
			require.Equal(t, s, l.state, "step %d lease %s", step, l.name)
		}
		require.Equal(t, want, tr.counts, "step %d", step)
	}
}

func BenchmarkLeaseTrackerRenew5000(b *testing.B) {
	tr := newLeaseTracker()
	now := 1_000_000 * sec
	names := make([]string, 5000)
	for i := range names {
		names[i] = "node-" + strconv.Itoa(i)
		tr.upsert(names[i], now, 40*sec, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		now += 2 * int64(time.Millisecond) // 500 renewals per second
		tr.upsert(names[i%len(names)], now, 40*sec, now)
	}
}

// TestSteadyVersion: the version of the duration family moves when a lease
// comes, goes or changes its duration, and only then: a renewal alone must
// not make the handler write and compress the family again.
func TestSteadyVersion(t *testing.T) {
	tr := newLeaseTracker()
	now := 1000 * sec
	d := 40 * sec
	version := func() uint64 { return tr.steadyVersion }

	v0 := version()
	tr.upsert("a", now, d, now)
	v1 := version()
	require.NotEqual(t, v0, v1, "a new lease")
	tr.upsert("a", now+10*sec, d, now+10*sec)
	tr.advance(now + 60*sec)
	require.Equal(t, v1, version(), "a renewal and time passing")
	tr.upsert("a", now+70*sec, 60*sec, now+70*sec)
	v2 := version()
	require.NotEqual(t, v1, v2, "another duration")
	require.False(t, tr.remove("b"))
	require.Equal(t, v2, version(), "removing an unknown lease")
	require.True(t, tr.remove("a"))
	require.NotEqual(t, v2, version(), "a lease gone")
}
