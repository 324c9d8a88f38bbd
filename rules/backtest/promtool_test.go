package backtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/scenario"
)

// The backtest and Prometheus agree: the incident scenario at 50 nodes,
// put on the 15 s grid promtool's unit tests use, gives the same firing
// alerts (labels and annotations) every minute in `cascade backtest` and in
// `promtool test rules` (the version the engine embeds).
func TestPromtoolAgreesWithTheBacktest(t *testing.T) {
	const step = 15_000 // ms
	var raw bytes.Buffer
	_, err := scenario.Generate(&raw, "incident", scenario.Options{Nodes: 50, Start: time.Unix(0, 0)})
	require.NoError(t, err)
	grid := onGrid(t, raw.Bytes(), step)

	// The backtest, on the grid-aligned data, noting the firing alerts
	// every minute.
	type alertTest struct {
		EvalTime  string     `yaml:"eval_time"`
		Alertname string     `yaml:"alertname"`
		ExpAlerts []expAlert `yaml:"exp_alerts"`
	}
	var tests []alertTest
	_, err = Run(t.Context(), bytes.NewReader(grid.openMetrics()), Options{
		AfterEval: func(_ context.Context, g *promrules.Group, ts time.Time) {
			if ts.UnixMilli()%60_000 != 0 {
				return
			}
			// One test per alert name: two rules of one name (the incident
			// per cluster and per region) are one alert to promtool.
			byName := map[string]*alertTest{}
			var names []string
			for _, r := range g.AlertingRules() {
				at := byName[r.Name()]
				if at == nil {
					at = &alertTest{EvalTime: (time.Duration(ts.UnixMilli()) * time.Millisecond).String(), Alertname: r.Name(), ExpAlerts: []expAlert{}}
					byName[r.Name()] = at
					names = append(names, r.Name())
				}
				for _, a := range r.ActiveAlerts() {
					if a.State == promrules.StateFiring {
						at.ExpAlerts = append(at.ExpAlerts, expAlert{Labels: a.Labels.Map(), Annotations: a.Annotations.Map()})
					}
				}
			}
			for _, name := range names {
				at := byName[name]
				slices.SortFunc(at.ExpAlerts, func(a, b expAlert) int { return strings.Compare(fmt.Sprint(a.Labels), fmt.Sprint(b.Labels)) })
				tests = append(tests, *at)
			}
		},
	}, func(Transition) {})
	require.NoError(t, err)
	firing := 0
	for _, at := range tests {
		firing += len(at.ExpAlerts)
	}
	require.Greater(t, firing, 100, "the incident fires alerts to compare")

	// The same data and expectations as a promtool unit test.
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	for _, at := range tests {
		for i := range at.ExpAlerts {
			delete(at.ExpAlerts[i].Labels, "alertname")
		}
	}
	doc := map[string]any{
		"rule_files":          []string{filepath.Join(root, "rules", "incident.yml"), filepath.Join(root, "rules", "symptoms.yml")},
		"evaluation_interval": "15s",
		"group_eval_order":    []string{"cascade-incident", "cascade-symptoms"},
		"tests": []any{map[string]any{
			"interval":        "15s",
			"input_series":    grid.inputSeries(step),
			"alert_rule_test": tests,
		}},
	}
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "incident_50_nodes_test.yml")
	require.NoError(t, os.WriteFile(file, b, 0o644))
	out, err := testenv.GoPromtool("test", "rules", file)
	require.NoError(t, err, "promtool disagrees with the backtest:\n%s", tail(out, 6000))
	require.Contains(t, string(out), "SUCCESS")
	t.Logf("%d alert checks, %d firing alerts compared", len(tests), firing)
}

type expAlert struct {
	Labels      map[string]string `yaml:"exp_labels"`
	Annotations map[string]string `yaml:"exp_annotations"`
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// gridData is series with every timestamp moved down onto the grid.
type gridData struct {
	order  []string
	lsets  map[string]labels.Labels
	values map[string]map[int64]float64 // by series, by grid index
	last   int64                        // highest grid index
}

func onGrid(t *testing.T, b []byte, step int64) *gridData {
	g := &gridData{lsets: map[string]labels.Labels{}, values: map[string]map[int64]float64{}}
	p := textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	var lset labels.Labels
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if e != textparse.EntrySeries {
			continue
		}
		_, ts, v := p.Series()
		p.Labels(&lset)
		key := lset.String()
		if _, ok := g.values[key]; !ok {
			g.order = append(g.order, key)
			g.lsets[key] = lset.Copy()
			g.values[key] = map[int64]float64{}
		}
		i := *ts / step
		_, dup := g.values[key][i]
		require.False(t, dup, "%s has two samples in grid step %d", key, i)
		g.values[key][i] = v
		g.last = max(g.last, i)
	}
	return g
}

func (g *gridData) indexes(key string) []int64 {
	var idx []int64
	for i := range g.values[key] {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return idx
}

func (g *gridData) openMetrics() []byte {
	var b bytes.Buffer
	for _, key := range g.order {
		name := g.lsets[key].Get(labels.MetricName)
		var pairs []string
		g.lsets[key].Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.Name, l.Value))
			}
		})
		for _, i := range g.indexes(key) {
			fmt.Fprintf(&b, "%s{%s} %s %d\n", name, strings.Join(pairs, ","), strconv.FormatFloat(g.values[key][i], 'f', -1, 64), i*15)
		}
	}
	b.WriteString("# EOF\n")
	return b.Bytes()
}

// inputSeries writes each series in promtool's notation, with the
// staleness markers the backtest's loader adds: one step after a series'
// last sample when the next comes more than two steps later, or never.
func (g *gridData) inputSeries(step int64) []map[string]string {
	var out []map[string]string
	for _, key := range g.order {
		idx := g.indexes(key)
		vals := make([]string, idx[len(idx)-1]+2)
		for i := range vals {
			vals[i] = "_"
		}
		for n, i := range idx {
			vals[i] = strconv.FormatFloat(g.values[key][i], 'f', -1, 64)
			next := g.last + 1
			if n+1 < len(idx) {
				next = idx[n+1]
			} else if g.last-i <= 2 {
				continue
			}
			if next-i > 2 {
				vals[i+1] = "stale"
			}
		}
		for len(vals) > 0 && vals[len(vals)-1] == "_" {
			vals = vals[:len(vals)-1]
		}
		out = append(out, map[string]string{"series": key, "values": strings.Join(vals, " ")})
	}
	return out
}
