package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/scenario"
)

// A journal of cascade run (incident events, no kind) reads as well as a
// backtest's output, and becomes the timeline.
func TestReportFromTheRunJournal(t *testing.T) {
	journal := `{"time":"2026-01-14T22:47:45Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"onset","root_cause":"apiserver_oom","evidence":{"cascade:apiserver_oom_kills:increase2m":3}}
{"time":"2026-01-14T22:48:00Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"escalation","root_cause":"apiserver_oom","evidence":{"cascade:apiserver_memory_utilisation:max":0.99,"cascade:node_lease_watch_up:max":0}}

{"time":"2026-01-14T23:42:15Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"mitigation","root_cause":"apiserver_oom"}
`
	events, err := ReadEvents(strings.NewReader(journal))
	require.NoError(t, err)
	require.Len(t, events, 3)

	var out bytes.Buffer
	cet := time.FixedZone("CET", 3600)
	truth := &scenario.Truth{Events: []scenario.Event{{Time: time.Date(2026, 1, 14, 22, 47, 30, 0, time.UTC), Name: scenario.FirstOOM}}}
	require.NoError(t, Write(&out, events, Options{Location: cet, Truth: truth}))
	md := out.String()
	require.Contains(t, md, "# Incident prod/2026-01-14T22:48:00Z: API server OOM")
	require.Contains(t, md, "| 23:48:00 | **escalation**: ControlPlaneCascadeIncident pages, root cause API server OOM | API memory 99 % of limit; lease watch down |")
	require.Contains(t, md, "| 23:47:30 | injected: first_oom |")
	require.Contains(t, md, "- Time to detect: 30s (from the first OOM kill at 23:47:30 to the page at 23:48:00)")
	require.Contains(t, md, "- Time to recover: not recovered in these events")
}

func TestNoIncident(t *testing.T) {
	events, err := ReadEvents(strings.NewReader(`{"time":"2026-01-14T22:47:45Z","kind":"alert","name":"GatewayRequestSurge","state":"firing","labels":{"cluster":"prod"}}` + "\n"))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, events, Options{}))
	require.Contains(t, out.String(), "# No incident")
}

func TestBadEventsNameTheLine(t *testing.T) {
	for in, want := range map[string]string{
		"": "no events",
		`{"time":"2026-01-14T22:47:45Z","kind":"alert"}` + "\n{oops\n": "line 2:",
		`{"cluster":"x"}`:   "line 1: neither a backtest transition",
		`{"phase":"onset"}`: "line 1: no time",
	} {
		_, err := ReadEvents(strings.NewReader(in))
		require.ErrorContains(t, err, want, in)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-14T22:47:45Z","cluster":"prod","incident":"i","phase":"onset","root_cause":"apiserver_oom"}` + "\n"))
	f.Add([]byte(`{"time":"2026-01-14T22:47:45Z","kind":"incident","name":"ControlPlaneCascadeIncident","phase":"escalation","labels":{"cluster":"a"}}` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		events, err := ReadEvents(bytes.NewReader(in))
		if err != nil {
			return
		}
		for i, e := range events {
			if e.Time.IsZero() || i > 0 && e.Time.Before(events[i-1].Time) {
				t.Fatalf("event %d: zero or out-of-order time %v", i, e.Time)
			}
		}
		// Whatever reads, writes.
		if err := Write(&bytes.Buffer{}, events, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}
