// Package deploy is how Cascade is installed in a cluster: the Helm chart
// (helm/cascade), the plain manifests rendered from it (*.yaml here), and the
// code that keeps both, and the mixin's copies, current with rules/*.yml and
// dashboards/json. Nothing generated is edited by hand: `make manifests`
// writes it all from its sources, and a test fails when it is stale.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// ChartDir is the chart, relative to the repository's root.
const ChartDir = "deploy/helm/cascade"

// Release and Namespace are what the plain manifests are rendered as: the
// names users of deploy/*.yaml have had from the start.
const (
	Release   = "cascade"
	Namespace = "cascade"
)

// A copySet is a folder of source files copied unchanged where a tool can only
// read files under its own folder: Helm's .Files, and jsonnet-bundler, which
// vendors the mixin's folder alone.
type copySet struct {
	from, to, glob string
}

var copies = []copySet{
	{"rules", ChartDir + "/files/rules", "*.yml"},
	{"dashboards/json", ChartDir + "/files/dashboards", "*.json"},
	{"rules", "mixin/rules", "*.yml"},
	{"dashboards/json", "mixin/dashboards", "*.json"},
}

// A PlainManifest is a file of deploy/ for those who do not use Helm: some
// of the chart's templates, rendered with some values.
type PlainManifest struct {
	File      string   // under deploy/
	About     string   // its header's first lines
	Set       []string // helm --set, on top of the chart's defaults
	Templates []string // under templates/
}

// PlainManifests are the files of deploy/ rendered from the chart. Each
// brings its Namespace, so each applies on its own.
var PlainManifests = []PlainManifest{
	{
		File:      "exporter.yaml",
		About:     "Cascade's lease and memory exporters: one Deployment, one Service, one scrape\n# target, with least-privilege RBAC.",
		Set:       []string{"createNamespace=true"},
		Templates: []string{"namespace.yaml", "exporter-rbac.yaml", "exporter.yaml"},
	},
	{
		File:      "gateway-sidecar.yaml",
		About:     "An example nginx API gateway with Cascade's gateway exporter as a sidecar.",
		Set:       []string{"createNamespace=true", "gatewayExample.enabled=true"},
		Templates: []string{"namespace.yaml", "gateway-example.yaml"},
	},
	{
		File:      "monitoring.yaml",
		About:     "prometheus-operator objects: the exporter's ServiceMonitor and one PrometheusRule\n# per rule file of rules/. Needs the operator's CRDs.",
		Set:       []string{"createNamespace=true"},
		Templates: []string{"namespace.yaml", "servicemonitor.yaml", "prometheusrule.yaml"},
	},
	{
		File:      "dashboards.yaml",
		About:     "The Grafana dashboards as ConfigMaps labelled grafana_dashboard: \"1\", for\n# Grafana's dashboard sidecar (kube-prometheus-stack's grafana.sidecar.dashboards).",
		Set:       []string{"createNamespace=true"},
		Templates: []string{"namespace.yaml", "dashboards.yaml"},
	},
	{
		File:      "cascade-run.yaml",
		About:     "cascade run as a StatefulSet with its volume, scraping the exporter Service:\n# for clusters without a Prometheus of their own. Set its Alertmanager in the ConfigMap.",
		Set:       []string{"createNamespace=true", "run.enabled=true"},
		Templates: []string{"namespace.yaml", "run.yaml"},
	},
}

// Generated renders every generated file from its sources: the copies, then
// the plain manifests from a chart holding those copies (not the ones on
// disk, which may be stale). Paths are relative to root.
func Generated(root, helm string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, c := range copies {
		names, err := filepath.Glob(filepath.Join(root, c.from, c.glob))
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("no %s in %s", c.glob, c.from)
		}
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			out[filepath.Join(c.to, filepath.Base(name))] = b
		}
	}

	out["mixin/sources.libsonnet"] = mixinSources(out)

	chart, err := chartWith(root, out)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(filepath.Dir(chart))
	for _, m := range PlainManifests {
		args := []string{"--namespace", Namespace}
		for _, s := range m.Set {
			args = append(args, "--set", s)
		}
		for _, t := range m.Templates {
			args = append(args, "--show-only", "templates/"+t)
		}
		rendered, err := Template(helm, Release, chart, args...)
		if err != nil {
			return nil, fmt.Errorf("deploy/%s: %w", m.File, err)
		}
		header := fmt.Sprintf("# %s\n#\n# Generated from %s by `make manifests`: change the chart (or rules/,\n# dashboards/json), never this file. Apply with:\n#   kubectl apply -f deploy/%s\n", m.About, ChartDir, m.File)
		out[filepath.Join("deploy", m.File)] = append([]byte(header), rendered...)
	}
	return out, nil
}

// mixinSources is the mixin's list of its copies: jsonnet cannot list a
// folder, so adding a rule file or a dashboard must change this file.
func mixinSources(generated map[string][]byte) []byte {
	var rules, dashboards []string
	for path := range generated {
		switch filepath.Dir(path) {
		case "mixin/rules":
			rules = append(rules, filepath.Base(path))
		case "mixin/dashboards":
			dashboards = append(dashboards, filepath.Base(path))
		}
	}
	slices.Sort(rules)
	slices.Sort(dashboards)
	var b strings.Builder
	b.WriteString("// Generated by `make manifests` from rules/*.yml and dashboards/json: never edit.\n{\n  ruleFiles: [\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "    std.parseYaml(importstr 'rules/%s'),\n", r)
	}
	b.WriteString("  ],\n  dashboards: {\n")
	for _, d := range dashboards {
		fmt.Fprintf(&b, "    '%s': import 'dashboards/%s',\n", d, d)
	}
	b.WriteString("  },\n}\n")
	return []byte(b.String())
}

// chartWith copies the chart to a temporary folder with the generated
// copies in place of its own, and returns the copy's path.
func chartWith(root string, generated map[string][]byte) (string, error) {
	tmp, err := os.MkdirTemp("", "cascade-chart-")
	if err != nil {
		return "", err
	}
	chart := filepath.Join(tmp, "cascade")
	if err := writeChart(root, chart, generated); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return chart, nil
}

func writeChart(root, chart string, generated map[string][]byte) error {
	src := filepath.Join(root, ChartDir)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "files" {
				return fs.SkipDir // the generated copies go in below
			}
			return os.MkdirAll(filepath.Join(chart, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(chart, rel), b, 0o644)
	})
	if err != nil {
		return err
	}
	for path, b := range generated {
		rel, err := filepath.Rel(ChartDir, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // not the chart's
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(chart, rel)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(chart, rel), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Template runs `helm template` of chart as release, offline.
func Template(helm, release, chart string, args ...string) ([]byte, error) {
	return runHelm(helm, append([]string{"template", release, chart}, args...)...)
}

func runHelm(helm string, args ...string) ([]byte, error) {
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Stale lists the generated files that differ from what is on disk under
// root, are missing, or are copies whose source is gone.
func Stale(root string, generated map[string][]byte) ([]string, error) {
	var stale []string
	for path, want := range generated {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err != nil || !bytes.Equal(got, want) {
			stale = append(stale, path)
		}
	}
	extra, err := leftovers(root, generated)
	if err != nil {
		return nil, err
	}
	stale = append(stale, extra...)
	slices.Sort(stale)
	return stale, nil
}

// Write brings root up to date: it writes every generated file that
// changed and removes copies whose source is gone.
func Write(root string, generated map[string][]byte) error {
	stale, err := Stale(root, generated)
	if err != nil {
		return err
	}
	for _, path := range stale {
		full := filepath.Join(root, path)
		b, ok := generated[path]
		if !ok {
			if err := os.Remove(full); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(full, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// leftovers are files in the copies' folders that no source gives.
func leftovers(root string, generated map[string][]byte) ([]string, error) {
	var extra []string
	for _, c := range copies {
		names, err := filepath.Glob(filepath.Join(root, c.to, "*"))
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			rel := filepath.Join(c.to, filepath.Base(name))
			if _, ok := generated[rel]; !ok {
				extra = append(extra, rel)
			}
		}
	}
	return extra, nil
}
