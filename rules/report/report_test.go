package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var cet = time.FixedZone("CET", 3600)

// A journal of cascade run (incident events, no kind) reads as well as a
// backtest's output, and becomes the timeline. The journal is of the
// version before scopes: it still reads.
func TestReportFromTheRunJournal(t *testing.T) {
	journal := `{"time":"2026-01-14T22:47:45Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"onset","root_cause":"apiserver_oom","evidence":{"cascade:apiserver_oom_kills:increase2m":3}}
{"time":"2026-01-14T22:48:00Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"escalation","root_cause":"apiserver_oom","evidence":{"cascade:apiserver_memory_utilisation:max":0.99,"cascade:node_lease_watch_up:max":0}}

{"time":"2026-01-14T23:42:15Z","cluster":"prod","incident":"prod/2026-01-14T22:48:00Z","phase":"mitigation","root_cause":"apiserver_oom"}
`
	in, err := ReadEvents(strings.NewReader(journal))
	require.NoError(t, err)
	require.Len(t, in.Incidents, 3)

	var out bytes.Buffer
	faults := []Fault{{Time: time.Date(2026, 1, 14, 22, 47, 30, 0, time.UTC), Name: FirstOOM}}
	require.NoError(t, Write(&out, in, Options{Location: cet, Faults: faults}))
	md := out.String()
	require.Contains(t, md, "# Incident prod/2026-01-14T22:48:00Z: API server OOM")
	require.Contains(t, md, "Cluster `prod`, root cause `apiserver_oom`.")
	require.Contains(t, md, "| 23:48:00 | **escalation**: ControlPlaneCascadeIncident pages, root cause API server OOM | API memory 99 % of limit; lease watch down |")
	require.Contains(t, md, "| 23:47:30 | injected: first_oom |")
	require.Contains(t, md, "- Time to detect: 30s (from the first OOM kill at 23:47:30 to the page at 23:48:00)")
	require.Contains(t, md, "- Time to recover: not recovered in these events")
}

// A regional incident, as a backtest prints it: when each cluster was hit
// and recovered, the alerts of the region.
func TestRegionalReport(t *testing.T) {
	lines := `{"time":"2026-01-14T22:47:30Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"onset","event":{"time":"2026-01-14T22:47:30Z","scope":"region","region":"fr-par","shared":"regional-api","incident":"region:fr-par@x","phase":"onset","root_cause":"apiserver_oom"}}
{"time":"2026-01-14T22:47:45Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"cluster_hit","event":{"time":"2026-01-14T22:47:45Z","scope":"region","region":"fr-par","cluster":"b|c","shared":"regional-api","incident":"region:fr-par@x","phase":"cluster_hit","root_cause":"apiserver_oom","clusters_hit":["b|c"]}}
{"time":"2026-01-14T22:47:45Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"cluster_hit","event":{"time":"2026-01-14T22:47:45Z","scope":"region","region":"fr-par","cluster":"a","shared":"regional-api","incident":"region:fr-par@x","phase":"cluster_hit","root_cause":"apiserver_oom","clusters_hit":["b|c","a"]}}
{"time":"2026-01-14T22:48:00Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"escalation","event":{"time":"2026-01-14T22:48:00Z","scope":"region","region":"fr-par","shared":"regional-api","incident":"region:fr-par@x","phase":"escalation","root_cause":"apiserver_oom","clusters_hit":["b|c","a"],"clusters_total":3,"evidence":{"cascade:region_clusters_hit:count":2,"cascade:apiserver_memory_utilisation:max":"NaN"}}}
{"time":"2026-01-14T22:48:30Z","kind":"alert","name":"NodeLeasesExpiringFleetWide","state":"firing","labels":{"region":"fr-par","cluster":"a"}}
{"time":"2026-01-14T22:48:30Z","kind":"alert","name":"NodeLeasesExpiringFleetWide","state":"firing","labels":{"region":"fr-par","cluster":"b|c"}}
{"time":"2026-01-14T22:48:30Z","kind":"alert","name":"NodeLeasesExpiringFleetWide","state":"firing","labels":{"region":"nl-ams","cluster":"z"}}
{"time":"2026-01-14T23:10:00Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"cluster_recovered","event":{"time":"2026-01-14T23:10:00Z","scope":"region","region":"fr-par","cluster":"a","shared":"regional-api","incident":"region:fr-par@x","phase":"cluster_recovered","root_cause":"apiserver_oom","clusters_hit":["b|c","a"]}}
`
	in, err := ReadEvents(strings.NewReader(lines))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, in, Options{Location: cet}))
	md := out.String()
	require.Contains(t, md, "# Regional incident region:fr-par@x: shared regional-api: API server OOM")
	require.Contains(t, md, "Region `fr-par`, shared component `regional-api` failed first, root cause `apiserver_oom`. Clusters hit: 2 of 3.")
	require.Contains(t, md, `| 23:47:45 | first cluster hit: b\|c |`)
	require.Contains(t, md, "| 23:48:30 | alert NodeLeasesExpiringFleetWide fires (2 of them) |", "only the region's alerts count")
	require.Contains(t, md, "cascade:apiserver_memory_utilisation:max: NaN; clusters hit: 2")
	require.Contains(t, md, "- Time to detect: 30s (from the onset at 23:47:30 to the page at 23:48:00)")
	require.Contains(t, md, "## Clusters hit\n\n| cluster | hit | recovered |\n|---|---|---|\n| b\\|c | 23:47:45 | not in these events |\n| a | 23:47:45 | 00:10:00 |\n")
}

// An escalation with no onset (a journal cut short) says so instead of
// measuring from the year 1.
func TestNoOnsetIsUnknownNotCenturies(t *testing.T) {
	in, err := ReadEvents(strings.NewReader(`{"time":"2026-01-14T22:48:00Z","cluster":"prod","incident":"i","phase":"escalation","root_cause":"apiserver_oom"}
{"time":"2026-01-14T23:48:00Z","cluster":"prod","incident":"i","phase":"recovery","root_cause":"apiserver_oom"}
`))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, in, Options{}))
	require.Contains(t, out.String(), "- Time to detect: unknown (no onset in these events; the page at 22:48:00)")
	require.Contains(t, out.String(), "- Time to recover: unknown (no onset in these events; nodes and gateway recovered at 23:48:00)")
	require.NotContains(t, out.String(), "2562047h")
}

// Names that would break the Markdown stay inside their cell and line.
func TestNamesCannotBreakTheMarkdown(t *testing.T) {
	in, err := ReadEvents(strings.NewReader(`{"time":"2026-01-14T22:47:00Z","cluster":"a|b\nc` + "`" + `d","incident":"i","phase":"onset","root_cause":"x|y"}
{"time":"2026-01-14T22:48:00Z","cluster":"a|b\nc` + "`" + `d","incident":"i","phase":"escalation","root_cause":"x|y"}
`))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, in, Options{}))
	md := out.String()
	require.Contains(t, md, "Cluster `` a|b c`d ``, root cause `x|y`.")
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") {
			cells := strings.Split(strings.ReplaceAll(line, `\|`, ""), "|")
			require.Len(t, cells, 5, "a table row of 3 cells: %q", line)
		}
	}
}

func TestNoIncident(t *testing.T) {
	in, err := ReadEvents(strings.NewReader(`{"time":"2026-01-14T22:47:45Z","kind":"alert","name":"GatewayRequestSurge","state":"firing","labels":{"cluster":"prod"}}` + "\n"))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, in, Options{}))
	require.Contains(t, out.String(), "# No incident")
}

func TestBadEventsNameTheLine(t *testing.T) {
	for in, want := range map[string]string{
		"": "no events",
		`{"time":"2026-01-14T22:47:45Z","kind":"alert"}` + "\n{oops\n": "line 2:",
		`{"cluster":"x"}`:                                 "line 1: neither a backtest transition",
		`{"phase":"onset","incident":"i"}`:                "line 1: no time",
		`{"time":"2026-01-14T22:47:45Z","phase":"onset"}`: "line 1: an incident event without an incident id",
		`{"time":"2026-01-14T22:47:45Z","kind":"incident","name":"x","phase":"onset"}`:           "line 1: an incident transition without its event",
		`{"time":"2026-01-14T22:47:45Z","incident":"i","phase":"onset","evidence":{"a":"lots"}}`: "line 1: evidence a",
	} {
		_, err := ReadEvents(strings.NewReader(in))
		require.ErrorContains(t, err, want, in)
	}
}

func TestReadFaults(t *testing.T) {
	faults, err := ReadFaults(strings.NewReader(`{"scenario":"incident","events":[{"time":"2026-01-14T22:47:30Z","name":"first_oom","detail":"x"}]}`))
	require.NoError(t, err)
	require.Equal(t, []Fault{{Time: time.Date(2026, 1, 14, 22, 47, 30, 0, time.UTC), Name: FirstOOM, Detail: "x"}}, faults)
	_, err = ReadFaults(strings.NewReader(`{"events":[{"name":"x"}]}`))
	require.ErrorContains(t, err, "event 1 has no time")
	_, err = ReadFaults(strings.NewReader(`[`))
	require.ErrorContains(t, err, "ground truth")
}

func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-14T22:47:45Z","cluster":"prod","incident":"i","phase":"onset","root_cause":"apiserver_oom"}` + "\n"))
	f.Add([]byte(`{"time":"2026-01-14T22:47:45Z","kind":"incident","name":"ControlPlaneCascadeIncident","state":"cluster_hit","event":{"time":"2026-01-14T22:47:45Z","scope":"region","incident":"r","phase":"cluster_hit","cluster":"a"}}` + "\n"))
	f.Add([]byte(`{"time":"2026-01-14T22:47:45Z","kind":"alert","name":"A","state":"firing","labels":{"cluster":"a"}}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := ReadEvents(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i, e := range in.Incidents {
			if e.Time.IsZero() || i > 0 && e.Time.Before(in.Incidents[i-1].Time) {
				t.Fatalf("event %d: zero or out-of-order time %v", i, e.Time)
			}
		}
		// Whatever reads, writes.
		if err := Write(&bytes.Buffer{}, in, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}
