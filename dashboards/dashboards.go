// Package dashboards holds Cascade's Grafana dashboards as Go code, written
// with the Grafana Foundation SDK, and turns them into the JSON files that
// Grafana's dashboard import and file provisioning read (committed in
// dashboards/json, rebuilt by `cascade dashboards build`).
//
// Every dashboard is in Grafana's classic dashboard model with two import
// inputs (DS_PROMETHEUS, DS_LOKI) that become the defaults of the data
// source variables, the region variable (and the cluster variable on the
// dashboards of a cluster; the regional overview shows one region), a
// stable UID, the shared annotations (Cascade's alerts, OOM kills, incident
// phase events from Loki) and links to the other Cascade dashboards. A
// cluster's queries never read a shared regional component's series, nor
// another region's. Queries use only the
// metric contract, the recording rules of rules/*.yml and Cascade's own
// instrumentation; the tests check that.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// Tag is carried by every Cascade dashboard; the dashboard links list the
// dashboards with it.
const Tag = "cascade"

// UIDs of the dashboards. They are stable: alerts link to the overview by
// its UID and slug (/d/cascade-overview/cascade-overview).
const (
	OverviewUID  = "cascade-overview"
	APIServerUID = "cascade-apiserver"
	LeasesUID    = "cascade-node-leases"
	GatewayUID   = "cascade-gateway"
	SelfUID      = "cascade-self"
	// RegionUID is the regional overview; the regional alerts link to it
	// (/d/cascade-region/cascade-region?var-region=REGION).
	RegionUID = "cascade-region"
)

// Definition is one dashboard: its file name and how to build it.
type Definition struct {
	UID   string
	File  string
	Build func() (dashboard.Dashboard, error)
}

// All returns every Cascade dashboard, overview first.
func All() []Definition {
	return []Definition{
		{OverviewUID, "cascade-overview.json", overview},
		{RegionUID, "cascade-region.json", regional},
		{APIServerUID, "cascade-apiserver.json", apiserver},
		{LeasesUID, "cascade-node-leases.json", leases},
		{GatewayUID, "cascade-gateway.json", gateway},
		{SelfUID, "cascade-self.json", self},
	}
}

// Render builds every dashboard and returns its importable JSON by file name.
func Render() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, d := range All() {
		built, err := d.Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
		}
		b, err := importable(built)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
		}
		out[d.File] = b
	}
	return out, nil
}

// Write renders every dashboard into dir, creating it if needed, and returns
// the paths written.
func Write(dir string) ([]string, error) {
	files, err := Render()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var paths []string
	for _, name := range names {
		p := filepath.Join(dir, name)
		// Atomic: Grafana's file provisioning, reading the folder, never
		// sees a half-written dashboard.
		if err := atomicfile.WriteFile(p, files[name], 0o644); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// importable turns a built dashboard into the JSON Grafana imports: panel
// ids and query refIds filled in, and the __inputs and __requires sections
// of an exported dashboard added.
func importable(d dashboard.Dashboard) ([]byte, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	numberPanels(m)
	// Annotation toggles stay in the dashboard's top bar, where older
	// Grafana versions have them too.
	if ann, ok := m["annotations"].(map[string]any); ok {
		list, _ := ann["list"].([]any)
		for _, a := range list {
			if am, ok := a.(map[string]any); ok {
				delete(am, "placement")
			}
		}
	}
	m["__inputs"] = []map[string]any{
		{"name": promInput, "label": "Prometheus", "description": "Where Cascade's metrics and recording rules are (Prometheus, Mimir, Thanos, VictoriaMetrics, Cockpit metrics)", "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"},
		{"name": lokiInput, "label": "Loki", "description": "Where Cascade ships incident events and gateway access log lines", "type": "datasource", "pluginId": "loki", "pluginName": "Loki"},
	}
	m["__requires"] = requires(m)
	m["__elements"] = map[string]any{}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// numberPanels gives every panel an id (in layout order) and every query
// without one a refId (A, B, ...).
func numberPanels(m map[string]any) {
	panels, _ := m["panels"].([]any)
	id := 0
	for _, p := range panels {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		id++
		pm["id"] = id
		targets, _ := pm["targets"].([]any)
		for i, t := range targets {
			if tm, ok := t.(map[string]any); ok {
				if _, has := tm["refId"]; !has {
					tm["refId"] = string(rune('A' + i))
				}
			}
		}
	}
}

// requires lists the plugins the dashboard uses, as Grafana's export does.
func requires(m map[string]any) []map[string]any {
	seen := map[string]bool{}
	panels, _ := m["panels"].([]any)
	for _, p := range panels {
		if pm, ok := p.(map[string]any); ok {
			if t, ok := pm["type"].(string); ok && t != "row" {
				seen[t] = true
			}
		}
	}
	var panelTypes []string
	for t := range seen {
		panelTypes = append(panelTypes, t)
	}
	sort.Strings(panelTypes)
	out := []map[string]any{
		{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
		{"type": "datasource", "id": "loki", "name": "Loki", "version": "1.0.0"},
		{"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
	}
	for _, t := range panelTypes {
		out = append(out, map[string]any{"type": "panel", "id": t, "name": t, "version": ""})
	}
	return out
}
