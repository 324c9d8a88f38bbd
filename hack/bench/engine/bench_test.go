package main

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/internal/contract"
)

// TestFleetExposition parses the fleet target's output with the text
// parser Prometheus clients use: every family of the metric contract is
// there, once, with 2 series per node, and every lease is fresh.
func TestFleetExposition(t *testing.T) {
	const nodes = 50
	f := &fleet{nodes: nodes, start: time.Now().Add(-time.Hour)}
	for i := range nodes {
		f.names = append(f.names, "node-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	now := time.Now()
	text := f.appendText(nil, now)
	// 2 per node; 15 API server (5 families, 3 replicas); 8 lease and node
	// counts and watch health; 13 request streams, 8 histograms of 21
	// series, 1 timeout counter, 2 log line counters.
	samples := 0
	for line := range bytes.Lines(text) {
		if line[0] != '#' {
			samples++
		}
	}
	if samples != 2*nodes+207 {
		t.Errorf("%d series, want %d", samples, 2*nodes+207)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range contract.Signals {
		if _, ok := mfs[m.Name]; !ok {
			t.Errorf("family %s missing", m.Name)
		}
	}
	if len(mfs) != len(contract.Signals) {
		t.Errorf("%d families, want the %d of the contract's signals", len(mfs), len(contract.Signals))
	}
	renew := mfs["cascade_node_lease_renew_timestamp_seconds"].GetMetric()
	if len(renew) != nodes || len(mfs["cascade_node_lease_duration_seconds"].GetMetric()) != nodes {
		t.Fatalf("%d renew series, want %d", len(renew), nodes)
	}
	nowSec := float64(now.UnixNano()) / 1e9
	for _, m := range renew {
		age := nowSec - m.GetGauge().GetValue()
		if age < -0.001 || age > leaseRenewSeconds+0.001 {
			t.Errorf("%v: lease age %.3fs, want within one renew interval", m.GetLabel(), age)
		}
	}
	for _, h := range mfs["cascade_gateway_request_duration_seconds"].GetMetric() {
		prev := uint64(0)
		for _, b := range h.GetHistogram().GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("%v: buckets not cumulative", h.GetLabel())
			}
			prev = b.GetCumulativeCount()
		}
		if h.GetHistogram().GetSampleCount() < prev {
			t.Errorf("%v: count below the last bucket", h.GetLabel())
		}
	}
}

func TestParseTextAndByLabel(t *testing.T) {
	m := parseText(`# HELP x X.
prometheus_rule_group_last_duration_seconds{rule_group="a.yml;g1"} 0.5
prometheus_rule_group_last_duration_seconds{other="1",rule_group="b.yml;g2"} 0.25
prometheus_tsdb_head_samples_appended_total{type="float"} 10
prometheus_tsdb_head_samples_appended_total{type="histogram"} 2
go_goroutines 7
`)
	got := byLabel(m, "prometheus_rule_group_last_duration_seconds", "rule_group")
	if len(got) != 2 || got["a.yml;g1"] != 0.5 || got["b.yml;g2"] != 0.25 {
		t.Errorf("byLabel: %v", got)
	}
	if got := byLabel(m, "prometheus_rule_group_last_duration_seconds", "group"); len(got) != 0 {
		t.Errorf("label group matched inside rule_group: %v", got)
	}
	if v, ok := sumFamily(m, "prometheus_tsdb_head_samples_appended_total"); !ok || v != 12 {
		t.Errorf("sumFamily = %v, %v", v, ok)
	}
	if m["go_goroutines"] != 7 {
		t.Errorf("go_goroutines = %v", m["go_goroutines"])
	}
}

// TestSlope: a counter stepping by 150 every 15 s grows 10 a second,
// whatever the phase of the window against the steps.
func TestSlope(t *testing.T) {
	for _, phase := range []float64{0, 3, 7.5, 14} {
		var ps []point
		for at := 0.0; at <= 240; at += 2 {
			ps = append(ps, point{at, 150 * math.Floor((at+phase)/15)})
		}
		if got := slope(ps); math.Abs(got-10) > 0.3 {
			t.Errorf("phase %v: slope %.3f, want 10", phase, got)
		}
	}
}

// TestFullEvaluations adds the k-th evaluation of every group; a group that
// ran once more in the window loses its first one.
func TestFullEvaluations(t *testing.T) {
	w := &watched{server: &server{name: nameCascade}, groups: map[string][]float64{
		"a": {0.001, 0.002, 0.003},
		"b": {0.010, 0.020},
	}}
	r := w.summarise(time.Second, 0, 0)
	want := []float64{0.012, 0.023}
	if len(r.evals) != len(want) {
		t.Fatalf("evals %v, want %v", r.evals, want)
	}
	for i := range want {
		if math.Abs(r.evals[i]-want[i]) > 1e-12 {
			t.Errorf("evals %v, want %v", r.evals, want)
		}
	}
}
