package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/rules/report"
)

// Every flag of the lab has its line in the README's table.
func TestREADMEDocumentsEveryLabFlag(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var o Options
	var a, b string
	var missing []string
	flagSet(&o, &a, &b).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(string(readme), "`--"+f.Name+"`") {
			missing = append(missing, "--"+f.Name)
		}
	})
	require.Empty(t, missing, "lab flags missing from README.md")
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"--shape", "region"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 300, o.Nodes, "the region's default size")
	require.Equal(t, filepath.Join("cascade-lab", "region"), o.OutputDir)

	o, err = parseFlags([]string{"--dry-run", "--memory-limit", "600Mi", "--remedy-limit", "2Gi"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 1000, o.Nodes)
	require.EqualValues(t, 600<<20, o.MemoryLimit)
	require.EqualValues(t, 2<<30, o.RemedyLimit)
	require.Equal(t, filepath.Join("cascade-lab", "cluster-dry-run"), o.OutputDir)
	require.Contains(t, o.Command, "./lab --dry-run --memory-limit 600Mi")

	// A relative --cascade (make lab's bin/cascade) is made absolute: the
	// exporters start in their own directories.
	t.Chdir(t.TempDir())
	require.NoError(t, os.MkdirAll("bin", 0o755))
	require.NoError(t, os.WriteFile(filepath.Join("bin", "cascade"), nil, 0o755))
	o, err = parseFlags([]string{"--cascade", "bin/cascade"}, &stderr)
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(o.Cascade), o.Cascade)
	require.FileExists(t, o.Cascade)

	for _, bad := range [][]string{
		{"--cascade", "no/such/cascade"},
		{"--shape", "zone"},
		{"--shape", "region", "--clusters", "2"},
		{"--nodes", "5"},
		{"--memory-limit", "lots"},
		{"--memory-limit", "1Gi", "--remedy-limit", "512Mi"},
		{"--interval", "1m"},
		{"extra"},
	} {
		stderr.Reset()
		_, err := parseFlags(bad, &stderr)
		require.Error(t, err, "%v", bad)
		require.NotEmpty(t, stderr.String(), "%v: the reason is printed", bad)
	}
}

func TestVerdict(t *testing.T) {
	ttp := func(v float64) *float64 { return &v }
	good := Figures{Shape: "cluster", OOMKills: 3, Pages: 1, PageRootCause: "apiserver_oom", TimeToPageSeconds: ttp(31)}
	for _, c := range verdict(good) {
		require.True(t, c.OK, c.What)
	}
	late := good
	late.TimeToPageSeconds = ttp(61)
	failed := func(f Figures) []string {
		var out []string
		for _, c := range verdict(f) {
			if !c.OK {
				out = append(out, c.What)
			}
		}
		return out
	}
	require.Equal(t, []string{"paged within 60 s of the first OOM kill"}, failed(late))
	twice := good
	twice.Pages = 2
	require.Equal(t, []string{"exactly one page"}, failed(twice))
	early := good
	early.OOMKillsBeforeFault = 1
	require.Equal(t, []string{"the fault OOM-killed it, and nothing before"}, failed(early), "a limit too tight for the fleet is no fault")

	region := Figures{Shape: "region", Clusters: 3, OOMKills: 2, Pages: 1, PageRootCause: "apiserver_oom", PageScope: "region",
		PageShared: "regional-api", TimeToPageSeconds: ttp(45), ClustersHit: 3, ClustersHitReal: 3, GuardClusters: 3, GuardLeadSeconds: ttp(12)}
	require.Empty(t, failed(region))
	region.GuardLeadSeconds = ttp(-3)
	require.Equal(t, []string{"the guard on in every hit cluster before the first NotReady"}, failed(region))
	region.GuardLeadSeconds = nil // no node was marked NotReady: the guard only has to be everywhere
	require.Empty(t, failed(region))
	region.GuardClusters = 2
	require.Equal(t, []string{"the guard on in every hit cluster before the first NotReady"}, failed(region))

	require.Empty(t, failed(Figures{DryRun: true}))
	require.Equal(t, []string{"no page"}, failed(Figures{DryRun: true, Pages: 1}))
}

// The real timeline's milestones are the ground truth cascade report
// reads: its time to detect counts from the first OOM kill.
func TestTimelineTruth(t *testing.T) {
	var out bytes.Buffer
	tl := newTimeline(&out)
	t0 := time.Date(2026, 1, 2, 23, 48, 0, 0, time.UTC)
	tl.addAt(t0, evFault, "", "fault")
	tl.addAt(t0.Add(3*time.Second), evFirstOOM, "cluster-1", "killed")
	tl.addAt(t0.Add(40*time.Second), evPage, "", "paged")
	tl.addAt(t0.Add(-time.Minute), evFleetReady, "", "ready")
	require.Contains(t, out.String(), "23:48:03   T+00:03  [cluster-1] killed")
	require.Equal(t, t0.Add(3*time.Second), tl.first(evFirstOOM, "*"))
	require.True(t, tl.first(evFirstOOM, "cluster-2").IsZero())

	var truth bytes.Buffer
	require.NoError(t, tl.truth(&truth))
	faults, err := report.ReadFaults(&truth)
	require.NoError(t, err)
	require.Len(t, faults, 2, "the fault and the first OOM kill; not the page")
	require.Equal(t, report.FirstOOM, faults[1].Name)

	var md bytes.Buffer
	tl.markdown(&md)
	lines := strings.Split(strings.TrimSpace(md.String()), "\n")
	require.Len(t, lines, 6)
	require.Contains(t, lines[2], "T-01:00", "in time order, before the fault")
}

func TestPlanDeployments(t *testing.T) {
	p := planDeployments(290<<20, 900<<10, 30)
	require.Equal(t, 30, p.Deployers)
	require.GreaterOrEqual(t, p.total(), int64(290<<20))
	require.Less(t, p.total(), int64(290<<20)+30*(900<<10))
	small := planDeployments(1<<20, 900<<10, 30)
	require.Equal(t, deployPlan{Deployers: 2, Objects: 1, ObjectBytes: 900 << 10}, small)
}

func TestGatewayRate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	require.NoError(t, os.WriteFile(path, []byte("a\nb\nc\n"), 0o644))
	buf := make([]byte, 2)
	n, off := countLines(path, 0, buf)
	require.Equal(t, 3, n)
	require.EqualValues(t, 6, off)
	n, off = countLines(path, off, buf)
	require.Zero(t, n)
	require.NoError(t, os.WriteFile(path, []byte("d\n"), 0o644)) // rotated
	n, off = countLines(path, off, buf)
	require.Equal(t, 1, n)
	require.EqualValues(t, 2, off)

	g := newGatewayRate(path)
	g.start = time.Unix(1000, 0)
	for i := range 30 {
		lines := 10
		if i >= 20 {
			lines = 50
		}
		g.add(g.start.Add(time.Duration(i+1)*time.Second), lines)
	}
	peak, at := g.peakSince(g.start)
	require.InDelta(t, 50, peak, 0.01)
	require.Equal(t, g.start.Add(30*time.Second), at)
	require.InDelta(t, 10, g.meanBetween(g.start, g.start.Add(20*time.Second)), 0.01)
}
