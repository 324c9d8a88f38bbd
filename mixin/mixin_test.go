// Package mixin holds Cascade's monitoring mixin (mixin.libsonnet, in
// jsonnet); this test evaluates it with go-jsonnet and checks that it gives
// exactly the rule files of rules/ and the dashboards of dashboards/json.
package mixin

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// output is what the mixin gives, as kube-prometheus reads it.
type output struct {
	Alerts     struct{ Groups []map[string]any } `json:"alerts"`
	Rules      struct{ Groups []map[string]any } `json:"rules"`
	Dashboards map[string]any                    `json:"dashboards"`
}

// evaluate evaluates the mixin with config merged into its _config.
func evaluate(t *testing.T, config string) output {
	t.Helper()
	testenv.RequireLong(t)
	jsonnet, err := testenv.ToolPath("jsonnet")
	require.NoError(t, err)
	cmd := exec.Command(jsonnet, "-e", `local m = (import 'mixin.libsonnet') + { _config+:: `+config+` };
{ alerts: m.prometheusAlerts, rules: m.prometheusRules, dashboards: m.grafanaDashboards }`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var o output
	require.NoError(t, json.Unmarshal(out, &o))
	return o
}

// ruleGroups are the groups of rules/*.yml, in file order, as JSON values.
func ruleGroups(t *testing.T) []map[string]any {
	t.Helper()
	files, err := filepath.Glob("../rules/*.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var groups []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var file struct{ Groups []map[string]any }
		require.NoError(t, yaml.Unmarshal(b, &file), f)
		groups = append(groups, file.Groups...)
	}
	return groups
}

func hasAlert(g map[string]any) bool {
	for _, r := range g["rules"].([]any) {
		if _, ok := r.(map[string]any)["alert"]; ok {
			return true
		}
	}
	return false
}

// TestMixinIsTheRuleFilesAndDashboards fails when the mixin's output differs
// from rules/*.yml or dashboards/json: every group once, unchanged and
// whole; alerting groups in prometheusAlerts, the others in prometheusRules.
func TestMixinIsTheRuleFilesAndDashboards(t *testing.T) {
	o := evaluate(t, "{}")
	var alerts, records []map[string]any
	for _, g := range ruleGroups(t) {
		if hasAlert(g) {
			alerts = append(alerts, g)
		} else {
			records = append(records, g)
		}
	}
	require.Equal(t, alerts, o.Alerts.Groups, "prometheusAlerts must be the alerting groups of rules/*.yml, unchanged")
	require.Equal(t, len(records), len(o.Rules.Groups))
	if len(records) > 0 {
		require.Equal(t, records, o.Rules.Groups, "prometheusRules must be the recording-only groups of rules/*.yml, unchanged")
	}

	files, err := filepath.Glob("../dashboards/json/*.json")
	require.NoError(t, err)
	require.Len(t, o.Dashboards, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var want any
		require.NoError(t, json.Unmarshal(b, &want))
		require.Equal(t, want, o.Dashboards[filepath.Base(f)], "grafanaDashboards[%q] must be dashboards/json/%s", filepath.Base(f), filepath.Base(f))
	}
}

// TestMixinConfig: alert labels reach every alert and nothing else, the
// interval every group.
func TestMixinConfig(t *testing.T) {
	o := evaluate(t, `{ alertLabels: { team: 'sre' }, ruleInterval: '30s' }`)
	var alerts, records int
	for _, g := range append(o.Alerts.Groups, o.Rules.Groups...) {
		require.Equal(t, "30s", g["interval"], g["name"])
		for _, r := range g["rules"].([]any) {
			rule := r.(map[string]any)
			labels, _ := rule["labels"].(map[string]any)
			if _, ok := rule["alert"]; ok {
				alerts++
				require.Equal(t, "sre", labels["team"], rule["alert"])
				require.NotEmpty(t, labels["severity"], "the rule's own labels stay")
			} else {
				records++
				require.NotContains(t, labels, "team", rule["record"])
			}
		}
	}
	require.Positive(t, alerts)
	require.Positive(t, records)
}
