package dashboards

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Query is one query found in a dashboard's JSON: a panel target, an
// annotation or a template variable.
type Query struct {
	Dashboard  string // UID
	Panel      string // panel title; "annotation: NAME" or "variable: NAME" otherwise
	PanelType  string // panel type, "annotation" or "variable"
	RefID      string
	Datasource string // "prometheus" or "loki"
	Expr       string // as written, with template variables
	Legend     string
	Instant    bool
}

// Queries lists every query of an importable dashboard JSON file, in panel
// order. Variable queries (label_values(SELECTOR, LABEL)) are reduced to
// their selector.
func Queries(file []byte) (uid string, qs []Query, err error) {
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string        `json:"title"`
			Type       string        `json:"type"`
			Datasource *datasourceJS `json:"datasource"`
			Targets    []struct {
				RefID        string        `json:"refId"`
				Expr         string        `json:"expr"`
				LegendFormat string        `json:"legendFormat"`
				Instant      bool          `json:"instant"`
				Range        *bool         `json:"range"`
				Datasource   *datasourceJS `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Name       string        `json:"name"`
				Expr       string        `json:"expr"`
				Datasource *datasourceJS `json:"datasource"`
				Target     *struct {
					Expr string `json:"expr"`
				} `json:"target"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name       string        `json:"name"`
				Type       string        `json:"type"`
				Query      any           `json:"query"`
				Datasource *datasourceJS `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(file, &d); err != nil {
		return "", nil, err
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			ds := t.Datasource.kind()
			if ds == "" {
				ds = p.Datasource.kind()
			}
			instant := t.Instant && (t.Range == nil || !*t.Range)
			qs = append(qs, Query{Dashboard: d.UID, Panel: p.Title, PanelType: p.Type, RefID: t.RefID,
				Datasource: ds, Expr: t.Expr, Legend: t.LegendFormat, Instant: instant})
		}
	}
	for _, a := range d.Annotations.List {
		exprs := []string{a.Expr}
		if a.Target != nil && a.Target.Expr != "" && a.Target.Expr != a.Expr {
			exprs = append(exprs, a.Target.Expr)
		}
		for _, e := range exprs {
			if e == "" {
				continue
			}
			qs = append(qs, Query{Dashboard: d.UID, Panel: "annotation: " + a.Name, PanelType: "annotation",
				Datasource: a.Datasource.kind(), Expr: e})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		sel, err := labelValuesSelector(q)
		if err != nil {
			return d.UID, qs, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		qs = append(qs, Query{Dashboard: d.UID, Panel: "variable: " + v.Name, PanelType: "variable",
			Datasource: v.Datasource.kind(), Expr: sel})
	}
	return d.UID, qs, nil
}

type datasourceJS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func (d *datasourceJS) kind() string {
	if d == nil {
		return ""
	}
	return d.Type
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// labelValuesSelector returns the series selector of a Grafana
// label_values(SELECTOR, LABEL) variable query.
func labelValuesSelector(q string) (string, error) {
	m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil {
		return "", fmt.Errorf("not label_values(SELECTOR, LABEL): %q", q)
	}
	return m[1], nil
}

// Grafana's built-in interval variables and the values Expand gives them.
var builtinVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "1h",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
	"__interval_ms":   "15000",
}

var varRE = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)

// Expand replaces the template variables of a query as Grafana would, with
// vars for the dashboard's own variables (cluster, region, instance) and
// builtins for Grafana's interval variables (overridable through vars). It
// fails on a variable it has no value for.
func Expand(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := vars[name]; ok {
			return v
		}
		if v, ok := builtinVars[name]; ok {
			return v
		}
		missing = append(missing, name)
		return m
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return out, fmt.Errorf("no value for template variable(s) %s in %q", strings.Join(missing, ", "), expr)
	}
	return out, nil
}
