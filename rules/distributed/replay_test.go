package distributed

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/scenario"
)

const evalInterval = 15 * time.Second

// transition is an alert changing state at an evaluation.
type transition struct {
	name, labels, state string
	at                  time.Time
}

func (tr transition) String() string {
	return fmt.Sprintf("%s %s %s %s", tr.at.UTC().Format(time.TimeOnly), tr.state, tr.name, tr.labels)
}

// labelKey is an alert's identity: its labels but for the ones a ruler adds
// to its ALERTS series (the state, vmalert's group name).
func labelKey(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case model.MetricNameLabel, model.AlertNameLabel, "alertstate", "alertgroup":
			continue
		}
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// TestVMAlertReplayAgreesWithBacktest: the incident scenario's data
// imported into VictoriaMetrics and replayed by vmalert over its whole
// span gives the alert transitions `cascade backtest` gives on the same
// data: the same alerts, states and labels, each within one evaluation.
//
// The replay goes through replayProxy (why: see there) and keep_firing_for
// is applied to what it wrote (see replayedTransitions). One difference is
// the engines' own and is let through, logged: an alert that is pending
// for a while on one side only and goes back to inactive without firing
// (nothing reaches Alertmanager). MetricsQL's rate() counts a counter that
// appears within the window from zero, and does not extrapolate; PromQL's
// needs two samples of it. When the API server dies, the gateway's
// 502/504 counters appear: at that evaluation VictoriaMetrics sees about
// twice the request rate Prometheus sees, and GatewayRequestSurge (3x its
// baseline) is pending there for one evaluation.
func TestVMAlertReplayAgreesWithBacktest(t *testing.T) {
	ctx := t.Context()
	var data bytes.Buffer
	_, err := scenario.Generate(&data, "incident", scenario.Options{Nodes: 500, NoPerNodeSeries: true})
	require.NoError(t, err)

	var want []transition
	sum, err := backtest.Run(ctx, bytes.NewReader(data.Bytes()), backtest.Options{Interval: evalInterval}, func(tr backtest.Transition) {
		if tr.Kind == backtest.KindAlert {
			want = append(want, transition{name: tr.Name, labels: labelKey(tr.Labels), state: tr.State, at: tr.Time})
		}
	})
	require.NoError(t, err)

	vm := testenv.VictoriaMetricsForTest(t)
	require.NoError(t, vm.ImportPrometheus(ctx, bytes.NewReader(data.Bytes())))

	files := ruleFiles(t)
	proxy := newReplayProxy(t, vm, files)
	began := time.Now()
	// One replay a file, in the order Cascade's engine evaluates them
	// (symptoms.yml reads what incident.yml records): vmalert replays the
	// groups of several files in the random order of a Go map.
	for _, file := range files {
		out, err := testenv.ReplayVMAlert(ctx, testenv.VMAlertOptions{
			RuleFiles: []string{file}, DatasourceURL: proxy.URL, RemoteWriteURL: proxy.URL, EvaluationInterval: evalInterval,
		}, sum.Start.Add(-evalInterval), sum.End,
			// One evaluation per request for recording rules (the proxy
			// narrows the range vmalert asks for), every result written
			// within 10 ms, and a short pause between rules: the proxy
			// makes each write visible before the next query.
			"-replay.maxDatapointsPerQuery=1", "-remoteWrite.flushInterval=10ms", "-replay.rulesDelay=250ms")
		require.NoError(t, err, "%s", tail(out, 4000))
	}
	t.Logf("vmalert replayed %s of data in %s (%d queries, %d narrowed, %d held for a rule's own results, %d staleness markers)",
		sum.End.Sub(sum.Start), time.Since(began).Round(time.Second), proxy.queries.Load(), proxy.narrowed.Load(), proxy.held.Load(), proxy.staleMarkers.Load())
	require.NoError(t, vm.Flush(ctx))

	got := replayedTransitions(t, vm.URL, sum.Start, sum.End, keepFiringFor(t, files))
	missing, extra := diff(want, got, evalInterval)
	for _, side := range []struct {
		name        string
		all, unpair []transition
	}{{"backtest only", want, missing}, {"vmalert only ", got, extra}} {
		quiet, loud := pendingOnly(side.all, side.unpair)
		for _, tr := range quiet {
			t.Logf("%s, pending without firing: %s", side.name, tr)
		}
		for _, tr := range loud {
			t.Errorf("%s: %s", side.name, tr)
		}
	}
	t.Logf("%d transitions in the backtest, %d in vmalert's replay", len(want), len(got))
	require.NotEmpty(t, want)
}

// keepFiringFor reads each alert's keep_firing_for from the rule files.
func keepFiringFor(t *testing.T, files []string) map[string]time.Duration {
	t.Helper()
	out := map[string]time.Duration{}
	for _, g := range ruleGroups(t, files) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			kff := time.Duration(r.KeepFiringFor)
			if old, ok := out[r.Alert]; ok {
				require.Equal(t, old, kff, "two rules of %s keep firing for different times", r.Alert)
			}
			out[r.Alert] = kff
		}
	}
	return out
}

// replayedTransitions reads the ALERTS series vmalert's replay wrote and
// turns them into transitions at every evaluation of [from, to].
//
// vmalert's replay writes pending and firing as its live mode does, but
// leaves keep_firing_for out (its range replay has no notion of it): an
// alert is written only while its expression returns it. Prometheus's
// rule manager (and vmalert live) keeps a firing alert firing for
// keep_firing_for after its expression stops, and on through a return of
// the expression within that time; that is applied here, as it would have
// been live.
func replayedTransitions(t *testing.T, vmURL string, from, to time.Time, kff map[string]time.Duration) []transition {
	t.Helper()
	q := url.Values{"match[]": {`{__name__="ALERTS"}`}, "start": {fmt.Sprint(from.Unix())}, "end": {fmt.Sprint(to.Unix())}}
	resp, err := http.Get(vmURL + "/api/v1/export?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	type alert struct {
		name, labels string
		states       map[int64]string // evaluation time (ms) → pending or firing
	}
	alerts := map[string]*alert{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var line struct {
			Metric     map[string]string `json:"metric"`
			Timestamps []int64           `json:"timestamps"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		name, key := line.Metric[model.AlertNameLabel], labelKey(line.Metric)
		a := alerts[name+"\x00"+key]
		if a == nil {
			a = &alert{name: name, labels: key, states: map[int64]string{}}
			alerts[name+"\x00"+key] = a
		}
		for _, ts := range line.Timestamps {
			if old := a.states[ts]; old != "firing" {
				a.states[ts] = line.Metric["alertstate"]
			}
		}
	}
	require.NoError(t, sc.Err())

	var out []transition
	for _, a := range alerts {
		state, keptSince := "inactive", time.Time{}
		for at := from; !at.After(to); at = at.Add(evalInterval) {
			next := a.states[at.UnixMilli()]
			switch {
			case next == "firing" || (next == "pending" && state == "firing"):
				next, keptSince = "firing", time.Time{}
			case next == "pending":
			case state == "firing" && kff[a.name] > 0:
				if keptSince.IsZero() {
					keptSince = at
				}
				next = "firing"
				if at.Sub(keptSince) >= kff[a.name] {
					next = "inactive"
				}
			default:
				next = "inactive"
			}
			if next != state {
				out = append(out, transition{name: a.name, labels: a.labels, state: next, at: at})
				state = next
			}
		}
	}
	slices.SortFunc(out, func(a, b transition) int {
		return cmp.Or(a.at.Compare(b.at), strings.Compare(a.name, b.name), strings.Compare(a.labels, b.labels))
	})
	return out
}

// diff pairs transitions of the same alert and state at most tolerance
// apart, and returns those of want and of got left without a pair.
func diff(want, got []transition, tolerance time.Duration) (missing, extra []transition) {
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if used[i] || g.name != w.name || g.labels != w.labels || g.state != w.state {
				continue
			}
			if d := g.at.Sub(w.at); d >= -tolerance && d <= tolerance {
				used[i], found = true, true
				break
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	for i, g := range got {
		if !used[i] {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

// pendingOnly splits unpaired transitions into those of episodes that were
// pending and ended without firing (the pending transition and the
// inactive one that follows it for the same alert, both unpaired), and the
// rest.
func pendingOnly(all, unpaired []transition) (quiet, loud []transition) {
	isUnpaired := map[transition]bool{}
	for _, tr := range unpaired {
		isUnpaired[tr] = true
	}
	tolerated := map[transition]bool{}
	for i, tr := range all {
		if tr.state != "pending" || !isUnpaired[tr] {
			continue
		}
		for _, next := range all[i+1:] {
			if next.name != tr.name || next.labels != tr.labels {
				continue
			}
			if next.state == "inactive" && isUnpaired[next] {
				tolerated[tr], tolerated[next] = true, true
			}
			break
		}
	}
	for _, tr := range unpaired {
		if tolerated[tr] {
			quiet = append(quiet, tr)
		} else {
			loud = append(loud, tr)
		}
	}
	return quiet, loud
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
