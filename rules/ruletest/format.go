package ruletest

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	yaml3 "go.yaml.in/yaml/v3"
)

// The YAML of a unit test file, as `promtool test rules` reads it. The file
// is decoded strictly (unknown or repeated keys are errors) with the same
// YAML library promtool uses, so the same files are accepted.

type testFile struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval,omitempty"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []testGroup    `yaml:"tests"`
	// FuzzyCompare lets sample values differ by one unit in the last place.
	FuzzyCompare bool `yaml:"fuzzy_compare,omitempty"`
}

// testGroup is one entry of tests: input series and what to expect of them.
type testGroup struct {
	Name           string         `yaml:"name,omitempty"`
	Interval       model.Duration `yaml:"interval"`
	StartTimestamp startTime      `yaml:"start_timestamp,omitempty"`
	InputSeries    []inputSeries  `yaml:"input_series"`
	AlertTests     []alertTest    `yaml:"alert_rule_test,omitempty"`
	ExprTests      []exprTest     `yaml:"promql_expr_test,omitempty"`
	ExternalLabels labels.Labels  `yaml:"external_labels,omitempty"`
	ExternalURL    string         `yaml:"external_url,omitempty"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []expAlert     `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

type exprTest struct {
	Expr       string         `yaml:"expr"`
	EvalTime   model.Duration `yaml:"eval_time"`
	ExpSamples []expSample    `yaml:"exp_samples"`
}

type expSample struct {
	Labels string  `yaml:"labels"`
	Value  float64 `yaml:"value"`
	// Histogram, in the series notation of promqltest, e.g.
	// "{{schema:0 sum:5 count:4 buckets:[1 2 1]}}".
	Histogram string `yaml:"histogram"`
}

// startTime is start_timestamp: Unix seconds or RFC 3339.
type startTime struct{ time.Time }

func (t *startTime) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		t.Time = time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC()
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("start_timestamp %q is neither Unix seconds nor RFC 3339", s)
	}
	t.Time = v
	return nil
}

// lineOf finds the line of the node at path (mapping keys and sequence
// indexes) in a YAML document, or the nearest ancestor's; 0 if unknown.
func lineOf(doc *yaml3.Node, path ...any) int {
	n := doc
	if n == nil || n.Kind != yaml3.DocumentNode || len(n.Content) == 0 {
		return 0
	}
	n = n.Content[0]
	line := n.Line
	for _, p := range path {
		var next *yaml3.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml3.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next, line = n.Content[i+1], n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yaml3.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
				line = next.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}
