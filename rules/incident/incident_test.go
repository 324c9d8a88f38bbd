package incident

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"
)

// fakeSignals answers the tracker's queries from a table: a unit test of
// the phase logic alone (the engine is tested on real rules elsewhere).
type fakeSignals map[string]float64

var ruleOf = regexp.MustCompile(`^(?:max_over_time\()?([^{(]+)\{`)

func (f fakeSignals) query(_ context.Context, q string, _ time.Time) (promql.Vector, error) {
	m := ruleOf.FindStringSubmatch(q)
	v, ok := f[m[1]]
	if !ok {
		return nil, nil
	}
	return promql.Vector{{F: v}}, nil
}

func TestPhases(t *testing.T) {
	dir := t.TempDir()
	signals := fakeSignals{}
	var got []Event
	tr, err := Open(dir, signals.query, slog.New(slog.DiscardHandler), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	ctx := t.Context()
	t0 := time.Date(2026, 11, 24, 22, 48, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

	// The OOM began a minute before the incident fired.
	signals[oomRule] = 1
	signals[symptomsRule] = 1
	signals["cascade:apiserver_oom:first_timestamp10m"] = float64(at(-1).Unix())
	signals[memoryMaxRule] = 1.0
	require.NoError(t, tr.Observe(ctx, at(0), map[string]string{"prod": "apiserver_oom"}))
	require.NoError(t, tr.Observe(ctx, at(1), map[string]string{"prod": "apiserver_oom"}))
	require.Len(t, got, 2)
	require.Equal(t, Onset, got[0].Phase)
	require.Equal(t, at(-1), got[0].Time, "onset is when the root-cause signal began")
	require.Equal(t, Escalation, got[1].Phase)
	require.Equal(t, at(0), got[1].Time)
	require.Equal(t, 1.0, got[1].Evidence[memoryMaxRule])

	// Restarted mid-incident: the incident is still open, nothing repeats.
	tr, err = Open(dir, signals.query, slog.New(slog.DiscardHandler), func(e Event) { got = append(got, e) })
	require.NoError(t, err)
	require.NoError(t, tr.Observe(ctx, at(2), map[string]string{"prod": "apiserver_oom"}))
	require.Len(t, got, 2)

	// Limit raised: the control plane recovers first, then the fleet.
	signals[oomRule] = 0
	require.NoError(t, tr.Observe(ctx, at(47), map[string]string{"prod": "apiserver_oom"}))
	delete(signals, symptomsRule)
	require.NoError(t, tr.Observe(ctx, at(66), map[string]string{"prod": "apiserver_oom"}))
	require.NoError(t, tr.Observe(ctx, at(76), map[string]string{}))
	require.Len(t, got, 5)
	require.Equal(t, []Phase{Mitigation, Recovery, Resolved}, []Phase{got[2].Phase, got[3].Phase, got[4].Phase})
	require.Equal(t, []time.Time{at(47), at(66), at(76)}, []time.Time{got[2].Time, got[3].Time, got[4].Time})
	for _, e := range got {
		require.Equal(t, got[0].Incident, e.Incident)
		require.Equal(t, "apiserver_oom", e.RootCause)
	}

	// The journal holds the same events, and nothing is open any more.
	journal, err := Journal(dir)
	require.NoError(t, err)
	require.Len(t, journal, 5)
	require.Equal(t, got[3].Phase, journal[3].Phase)
	tr, err = Open(dir, signals.query, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Empty(t, tr.open)
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	tr, err := Open(dir, fakeSignals{}.query, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, writeFile(tr.statePath(), "{not json"))
	_, err = Open(dir, fakeSignals{}.query, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "is corrupt")
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
