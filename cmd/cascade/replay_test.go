package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/scenario"
)

// replay runs a scenario, backtest or report command in process.
func replay(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	c := newCLI()
	cmd, err := c.parse(args)
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	code, ok := c.replay.dispatch(cmd, &out, &errOut)
	require.True(t, ok, "%s is a replay command", cmd)
	return code, out.String(), errOut.String()
}

// The scenario → backtest → report chain, as a user runs it: gzip data and
// truth on disk, JSON lines out, a Markdown timeline at the end.
func TestScenarioBacktestReport(t *testing.T) {
	dir := t.TempDir()
	data, truthFile := filepath.Join(dir, "incident.om.gz"), filepath.Join(dir, "truth.json")
	code, _, errOut := replay(t, "scenario", "incident", "--nodes", "60", "-o", data, "--truth", truthFile)
	require.Equal(t, 0, code, errOut)
	var truth scenario.Truth
	b, err := os.ReadFile(truthFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &truth))
	require.True(t, truth.ExpectIncident)
	require.Equal(t, "apiserver_oom", truth.RootCause)
	oom, ok := truth.Event(scenario.FirstOOM)
	require.True(t, ok)

	code, out, errOut := replay(t, "backtest", "--data", data, "--format", "json")
	require.Equal(t, 0, code, errOut)
	var phases []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var tr map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &tr), sc.Text())
		for _, field := range []string{"time", "kind", "name", "state", "labels"} {
			require.Contains(t, tr, field)
		}
		if tr["kind"] == backtest.KindIncident {
			event := tr["event"].(map[string]any)
			require.Equal(t, "apiserver_oom", event["root_cause"])
			require.Equal(t, "cluster", event["scope"])
			phases = append(phases, event["phase"].(string))
		}
	}
	require.Equal(t, []string{"onset", "escalation", "mitigation", "recovery", "resolved"}, phases)
	require.Contains(t, errOut, "ControlPlaneCascadeIncident=1", "one page, said on stderr")

	events := filepath.Join(dir, "events.jsonl")
	require.NoError(t, os.WriteFile(events, []byte(out), 0o644))
	report := filepath.Join(dir, "report.md")
	code, _, errOut = replay(t, "report", "--events", events, "--truth", truthFile, "--timezone", "UTC", "-o", report)
	require.Equal(t, 0, code, errOut)
	md, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(md), "# Incident cluster:demo@")
	require.Contains(t, string(md), "API server OOM")
	require.Contains(t, string(md), "| "+oom.Time.UTC().Format("15:04:05")+" | injected: first_oom")
	require.Contains(t, string(md), "- Time to detect: ")
	require.Contains(t, string(md), "- Time to recover: ")

	// Text output names the incident for people.
	code, out, _ = replay(t, "backtest", "--data", data)
	require.Equal(t, 0, code)
	escalations := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 6 && f[3] == "incident" && f[4] == "ControlPlaneCascadeIncident" && f[5] == "ESCALATION" {
			escalations++
		}
	}
	require.Equal(t, 1, escalations, "one ESCALATION line:\n%s", out)
}

// Bad input is refused with the line, exit 1, and nothing on stdout.
func TestBacktestRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.om")
	require.NoError(t, os.WriteFile(bad, []byte("# TYPE up gauge\nup 1 1000\nup 1 990\n# EOF\n"), 0o644))
	code, out, errOut := replay(t, "backtest", "--data", bad)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "line 3: sample of")

	code, out, errOut = replay(t, "backtest", "--data", filepath.Join(dir, "missing.om"))
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "no such file")

	code, _, errOut = replay(t, "report", "--events", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "line 1:")

	code, _, errOut = replay(t, "scenario", "incident", "--nodes", "9000", "-o", filepath.Join(dir, "x.om"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "nodes must be between 1 and 5000")
	_, err := os.Stat(filepath.Join(dir, "x.om"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing half-written")
}

func TestScenarioList(t *testing.T) {
	code, out, _ := replay(t, "scenario", "--list")
	require.Equal(t, 0, code)
	for _, name := range []string{"incident", "incident-autoheal", "node-failure", "zone-partition", "traffic-surge", "memory-plateau", "rolling-restart", "deploy-burst"} {
		require.Contains(t, out, name+" ")
	}
}

// make demo, the README's first command, as a newcomer runs it (at full
// speed here): the seed's regional outage unfolds, one page naming the
// shared API's OOM and the clusters hit, the report.
func TestMakeDemo(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	out := t.TempDir()
	cmd := exec.Command("make", "demo", "DEMO_FLAGS=--speed 0 --output.dir "+out)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	s := string(b)
	require.Regexp(t, `INCIDENT  ESCALATION regional ControlPlaneCascadeIncident in fr-par, root cause apiserver_oom of shared regional-api, \d+ of 20 clusters hit  → PAGE`, s)
	require.Contains(t, s, "# Regional incident region:fr-par@")
	require.Contains(t, s, "## Clusters hit")
	require.Contains(t, s, "Pages sent: 1.")
	require.Contains(t, s, "- Time to detect: ")
	for _, f := range []string{"transitions.jsonl", "loki-events.jsonl", "truth.json", "report.md"} {
		fi, err := os.Stat(filepath.Join(out, f))
		require.NoError(t, err)
		require.NotZero(t, fi.Size(), f)
	}
	loki, err := os.ReadFile(filepath.Join(out, "loki-events.jsonl"))
	require.NoError(t, err)
	pushes := map[string]int{} // by the stream's phase label
	for _, line := range strings.Split(strings.TrimSpace(string(loki)), "\n") {
		var push struct {
			Streams []struct {
				Stream map[string]string `json:"stream"`
			} `json:"streams"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &push), line)
		require.Len(t, push.Streams, 1)
		pushes[push.Streams[0].Stream["phase"]]++
	}
	for _, phase := range []string{"onset", "escalation", "mitigation", "recovery", "resolved"} {
		require.Equal(t, 1, pushes[phase], "one Loki push of the %s: %v", phase, pushes)
	}
	require.Greater(t, pushes["cluster_hit"], 2, "a Loki push per cluster hit: %v", pushes)
}

// The demo's alerts through a real Alertmanager running the generated
// routing: the incident pages once with its root cause.
func TestDemoPagesAlertmanagerOnce(t *testing.T) {
	am, hooks := routedAlertmanager(t, time.Second)

	bin := cascadeBinary(t)
	cmd := exec.Command(bin, "demo", "--nodes", "100", "--speed", "0", "--alertmanager.url", am.URL, "--output.dir", t.TempDir())
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	require.Contains(t, string(b), "Alerts go to the Alertmanager at "+am.URL)

	require.Eventually(t, func() bool { return hooks.Count("page") >= 1 }, 30*time.Second, 100*time.Millisecond)
	time.Sleep(3 * time.Second) // a second page would come within group_wait
	var firing int
	for _, m := range hooks.Received("page") {
		if m.Status != "firing" {
			continue
		}
		firing++
		require.Len(t, m.Alerts, 1)
		require.Equal(t, "ControlPlaneCascadeIncident", m.Alerts[0].Labels["alertname"])
		require.Equal(t, "apiserver_oom", m.Alerts[0].Labels["root_cause"])
	}
	require.Equal(t, 1, firing, "exactly one page")
	require.GreaterOrEqual(t, hooks.Count("guard"), 1, "the automation hears the guard")
}
