package deploy

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/cascade-sre/cascade/internal/runconfig"
)

func TestChartLint(t *testing.T) {
	chart := filepath.Join(repoRoot(t), ChartDir)
	for name, args := range map[string][]string{"defaults": nil, "everything on": everythingOn} {
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(helm(t), append([]string{"lint", "--strict", chart}, args...)...)
			require.NoError(t, err)
			require.Contains(t, string(out), "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

// TestGeneratedFilesAreCurrent fails while a copy of rules/*.yml or
// dashboards/json, the mixin's list of them or a plain manifest of deploy/
// differs from what its sources give.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root := repoRoot(t)
	files, err := Generated(root, helm(t))
	require.NoError(t, err)
	stale, err := Stale(root, files)
	require.NoError(t, err)
	require.Empty(t, stale, "stale against rules/, dashboards/json or the chart: run `make manifests`")
}

func TestStaleFindsEveryKindOfDifference(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		full := filepath.Join(root, path)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	write("mixin/rules/kept.yml", "same")
	write("mixin/rules/changed.yml", "old")
	write("mixin/rules/gone.yml", "its source was removed")
	generated := map[string][]byte{
		"mixin/rules/kept.yml":    []byte("same"),
		"mixin/rules/changed.yml": []byte("new"),
		"mixin/rules/new.yml":     []byte("a new rule file"),
	}
	stale, err := Stale(root, generated)
	require.NoError(t, err)
	require.Equal(t, []string{"mixin/rules/changed.yml", "mixin/rules/gone.yml", "mixin/rules/new.yml"}, stale)

	require.NoError(t, Write(root, generated))
	stale, err = Stale(root, generated)
	require.NoError(t, err)
	require.Empty(t, stale)
	_, err = os.Stat(filepath.Join(root, "mixin/rules/gone.yml"))
	require.True(t, os.IsNotExist(err), "a copy whose source is gone is removed")
}

// ruleFiles are rules/*.yml by name.
func ruleFiles(t *testing.T) map[string][]byte {
	t.Helper()
	return readGlob(t, filepath.Join(repoRoot(t), "rules", "*.yml"))
}

func readGlob(t *testing.T, glob string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(glob)
	require.NoError(t, err)
	require.NotEmpty(t, names, glob)
	files := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		require.NoError(t, err)
		files[filepath.Base(n)] = b
	}
	return files
}

// TestChartHoldsTheRuleFilesAndDashboards renders the chart (from the
// repository, its copies as committed) and finds in it rules/*.yml, each
// the spec of one PrometheusRule, and dashboards/json, each the data of one
// ConfigMap labelled for Grafana's sidecar, unchanged.
func TestChartHoldsTheRuleFilesAndDashboards(t *testing.T) {
	objs := render(t, Release, Namespace)

	rules := ruleFiles(t)
	prs := only(objs, "PrometheusRule")
	require.Len(t, prs, len(rules))
	for file, text := range rules {
		var want map[string]any
		require.NoError(t, yaml.Unmarshal(text, &want), file)
		name := "cascade-" + strings.TrimSuffix(file, ".yml")
		var found bool
		for _, pr := range prs {
			if pr.GetName() == name {
				found = true
				require.Equal(t, want, pr.Object["spec"], "PrometheusRule %s must hold rules/%s unchanged", name, file)
			}
		}
		require.True(t, found, "no PrometheusRule %s for rules/%s", name, file)
	}

	dashboards := readGlob(t, filepath.Join(repoRoot(t), "dashboards", "json", "*.json"))
	cms := only(objs, "ConfigMap")
	require.Len(t, cms, len(dashboards))
	for file, text := range dashboards {
		var found bool
		for _, cm := range cms {
			data, ok, _ := unstructured.NestedString(cm.Object, "data", file)
			if !ok {
				continue
			}
			found = true
			require.Equal(t, string(text), data, "ConfigMap %s must hold dashboards/json/%s unchanged", cm.GetName(), file)
			require.Equal(t, "1", cm.GetLabels()["grafana_dashboard"], "the label kube-prometheus-stack's Grafana sidecar looks for")
			require.True(t, json.Valid([]byte(data)))
		}
		require.True(t, found, "no ConfigMap holds dashboards/json/%s", file)
	}
}

// TestRunConfigLoads loads the configuration the chart gives cascade run
// with cascade run's own loader: as rendered by default and with every
// option set.
func TestRunConfigLoads(t *testing.T) {
	for name, args := range map[string][]string{
		"defaults":      {"--set", "run.enabled=true"},
		"everything on": everythingOn,
	} {
		t.Run(name, func(t *testing.T) {
			var text string
			for _, cm := range only(render(t, Release, Namespace, args...), "ConfigMap") {
				if cm.GetName() == "cascade-run" {
					text, _, _ = unstructured.NestedString(cm.Object, "data", "cascade.yml")
				}
			}
			require.NotEmpty(t, text, "no configuration rendered for cascade run")
			cfg, err := runconfig.Parse([]byte(text), "/etc/cascade", slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err, text)
			require.Equal(t, "/var/lib/cascade", cfg.Cascade.Storage.Path, "the StatefulSet's volume")
			require.Len(t, cfg.Prometheus.ScrapeConfigs, map[string]int{"defaults": 2, "everything on": 3}[name])
			require.Equal(t, "cascade-exporter", cfg.Prometheus.ScrapeConfigs[0].JobName)
			require.Contains(t, text, `targets: ["cascade-exporter.cascade.svc:9847"]`)
		})
	}
}
