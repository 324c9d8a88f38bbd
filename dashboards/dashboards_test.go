package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// jsonDir is where the committed dashboards are, relative to this package.
const jsonDir = "json"

// committed reads every committed dashboard JSON file by name.
func committed(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(jsonDir, "*.json"))
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// TestCommittedJSONIsCurrent fails when the committed JSON is stale against
// the Go source (or a file is missing or left over): rebuild with
// `cascade dashboards build`.
func TestCommittedJSONIsCurrent(t *testing.T) {
	want, err := Render()
	require.NoError(t, err)
	got := committed(t)
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b, ok := got[name]
		if !ok {
			t.Errorf("%s is missing from dashboards/json: run `bin/cascade dashboards build`", name)
			continue
		}
		if !bytes.Equal(b, want[name]) {
			t.Errorf("dashboards/json/%s is stale against the Go source: run `bin/cascade dashboards build`", name)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("dashboards/json/%s is not built from the Go source: remove it", name)
	}
}

// TestCommittedJSONIsAGrafanaDashboard loads every committed file with the
// Foundation SDK's own model (panels and queries through its plugin
// registry) and its schema validation, and checks what import and the
// other dashboards rely on: stable unique UIDs, the data source inputs, the
// cluster and region variables, unique panel ids on the 24-column grid,
// every query on a data source variable, links to dashboards that exist.
func TestCommittedJSONIsAGrafanaDashboard(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files := committed(t)
	require.Len(t, files, len(All()))
	uids := map[string]bool{}
	for _, d := range All() {
		uids[d.UID] = true
	}
	require.True(t, uids["cascade-overview"], "alerts link to /d/cascade-overview/cascade-overview")
	require.True(t, uids["cascade-region"], "regional alerts link to /d/cascade-region/cascade-region")
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			var d dashboard.Dashboard
			require.NoError(t, json.Unmarshal(b, &d))
			require.NoError(t, d.Validate())
			require.NotNil(t, d.Uid)
			require.True(t, uids[*d.Uid], "unknown uid %s", *d.Uid)
			require.Contains(t, []string{"cascade-overview", "cascade-region", "cascade-apiserver", "cascade-node-leases", "cascade-gateway", "cascade-self"}, *d.Uid, "UIDs are stable: links and bookmarks use them")
			require.Contains(t, d.Tags, Tag)

			var raw struct {
				Inputs []struct {
					Name     string `json:"name"`
					Type     string `json:"type"`
					PluginID string `json:"pluginId"`
				} `json:"__inputs"`
				Panels []map[string]any `json:"panels"`
			}
			require.NoError(t, json.Unmarshal(b, &raw))
			inputs := map[string]string{}
			for _, in := range raw.Inputs {
				require.Equal(t, "datasource", in.Type)
				inputs[in.Name] = in.PluginID
			}
			require.Equal(t, map[string]string{"DS_PROMETHEUS": "prometheus", "DS_LOKI": "loki"}, inputs)

			vars := map[string]dashboard.VariableModel{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
			}
			// A cluster's dashboards choose a region and a cluster; the
			// regional overview one region.
			want := []string{RegionVar, ClusterVar}
			if *d.Uid == RegionUID {
				want = want[:1]
				require.NotContains(t, vars, ClusterVar)
				require.False(t, vars[RegionVar].IncludeAll != nil && *vars[RegionVar].IncludeAll, "the regional overview shows one region")
			}
			for _, name := range want {
				require.Contains(t, vars, name)
				require.Equal(t, dashboard.VariableTypeQuery, vars[name].Type)
			}
			require.Equal(t, "${DS_PROMETHEUS}", *vars[PrometheusVar].Current.Value.String, "the import input becomes the default")
			require.Equal(t, "${DS_LOKI}", *vars[LokiVar].Current.Value.String)

			ids := map[float64]bool{}
			for _, p := range raw.Panels {
				id, _ := p["id"].(float64)
				require.NotZero(t, id, "panel %v has no id", p["title"])
				require.False(t, ids[id], "panel id %v twice", id)
				ids[id] = true
				pos := p["gridPos"].(map[string]any)
				require.LessOrEqual(t, pos["x"].(float64)+pos["w"].(float64), 24.0, "panel %v is off the grid", p["title"])
				require.NotEmpty(t, p["title"])
				targets, _ := p["targets"].([]any)
				require.NotEmpty(t, targets, "panel %v has no query", p["title"])
				for _, tg := range targets {
					ds := tg.(map[string]any)["datasource"].(map[string]any)
					require.Contains(t, []string{"${" + PrometheusVar + "}", "${" + LokiVar + "}"}, ds["uid"],
						"panel %v: a query must use a data source variable, not a fixed data source", p["title"])
				}
			}
			for _, uid := range linkedUIDs(b) {
				require.True(t, uids[uid], "link to unknown dashboard %s", uid)
			}
		})
	}
}

var linkRE = regexp.MustCompile(`"/d/([a-z0-9-]+)`)

// linkedUIDs returns the dashboard UIDs the file links to (/d/UID...).
func linkedUIDs(b []byte) []string {
	var out []string
	for _, m := range linkRE.FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// testVars are values for the dashboards' own variables when a query is
// parsed or run.
var testVars = map[string]string{ClusterVar: "prod-eu-1", RegionVar: ".*", "instance": ".*"}

// checkQuery parses one query after expanding its template variables:
// PromQL for Prometheus, a stream selector (label matchers, at least one of
// which cannot match the empty string, as Loki requires) for Loki. It
// returns the metric names a PromQL query reads.
func checkQuery(q Query) (names []string, err error) {
	expr, err := Expand(q.Expr, testVars)
	if err != nil {
		return nil, err
	}
	switch q.Datasource {
	case "prometheus":
		e, err := parser.ParseExpr(expr)
		if err != nil {
			return nil, err
		}
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				name := vs.Name
				for _, m := range vs.LabelMatchers {
					if m.Name == "__name__" && name == "" {
						name = m.Value
					}
				}
				names = append(names, name)
			}
			return nil
		})
		for _, n := range names {
			if n == "" || !regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`).MatchString(n) {
				return nil, fmt.Errorf("selector without a literal metric name in %q", expr)
			}
		}
		return names, nil
	case "loki":
		ms, err := parser.ParseMetricSelector(expr)
		if err != nil {
			return nil, fmt.Errorf("stream selector %q: %w", expr, err)
		}
		for _, m := range ms {
			if !m.Matches("") {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("stream selector %q: every matcher matches the empty string; Loki refuses it", expr)
	}
	return nil, fmt.Errorf("query %q has data source %q, want prometheus or loki", q.Expr, q.Datasource)
}

// allQueries returns every query of the committed dashboards.
func allQueries(t *testing.T) []Query {
	t.Helper()
	var all []Query
	for name, b := range committed(t) {
		_, qs, err := Queries(b)
		require.NoError(t, err, name)
		all = append(all, qs...)
	}
	// Dashboards in a fixed order, queries in their order in the file.
	sort.SliceStable(all, func(i, j int) bool { return all[i].Dashboard < all[j].Dashboard })
	return all
}

// TestEveryQueryParses runs checkQuery on every panel, annotation and
// variable query of the committed dashboards.
func TestEveryQueryParses(t *testing.T) {
	qs := allQueries(t)
	counts := map[string]int{}
	for _, q := range qs {
		counts[q.Datasource]++
		if _, err := checkQuery(q); err != nil {
			t.Errorf("%s / %s: %v", q.Dashboard, q.Panel, err)
		}
	}
	require.Greater(t, counts["prometheus"], 50)
	require.GreaterOrEqual(t, counts["loki"], 3, "incident events (panel, annotation) and gateway lines")
	t.Logf("%d queries: %v", len(qs), counts)
}

// TestCheckQueryCatchesBadQueries makes sure the checks above can fail.
func TestCheckQueryCatchesBadQueries(t *testing.T) {
	bad := []Query{
		{Datasource: "prometheus", Expr: `sum(rate(cascade_gateway_requests_total[$__rate_interval])`},
		{Datasource: "prometheus", Expr: `cascade_apiserver_up{cluster="$cluster", zone="$zone"}`},
		{Datasource: "prometheus", Expr: `{__name__=~"cascade_.+"}`},
		{Datasource: "loki", Expr: `{cluster="$cluster"} |= "x"`},
		{Datasource: "loki", Expr: `{cluster=~".*"}`},
		{Datasource: "", Expr: `up`},
	}
	for _, q := range bad {
		_, err := checkQuery(q)
		require.Error(t, err, q.Expr)
	}
	names, err := checkQuery(Query{Datasource: "prometheus", Expr: `histogram_quantile(0.9, sum by (le) (rate(cascade_gateway_request_duration_seconds_bucket{cluster="$cluster"}[$__rate_interval]))) / on () group_left ALERTS`})
	require.NoError(t, err)
	require.Equal(t, []string{"cascade_gateway_request_duration_seconds_bucket", "ALERTS"}, names)
}

func TestExpand(t *testing.T) {
	got, err := Expand(`rate(x{cluster="$cluster", r=~"${region}", i=~"${instance:regex}"}[$__rate_interval]) [[cluster]] ${__range_s}`, testVars)
	require.NoError(t, err)
	require.Equal(t, `rate(x{cluster="prod-eu-1", r=~".*", i=~".*"}[1m]) prod-eu-1 3600`, got)
	_, err = Expand(`x{a="$nope"}`, testVars)
	require.True(t, err != nil && strings.Contains(err.Error(), "nope"), "%v", err)
	require.False(t, errors.Is(err, nil))
}

// TestQueriesKeepToTheirScope checks, for every query of the dashboards
// about series of the metric contract, its recording rules and ALERTS, that
// its selectors cannot read series they are not about (rules/README.md,
// "Regions and shared components"): a cluster's dashboards never read a
// shared component (which has no cluster, so cluster="" alone would match
// it where the cluster variable is empty) or a cluster of the same name in
// another region; the regional overview never reads another region, and
// its shared components' panels never a cluster's own API server or
// gateway; a cluster's alerts are its own, not its region's. Only the
// matchers on region, cluster, shared and scope are weighed;
// the others are taken as matching. A selector of the regional incident
// (scope="region") on a cluster's dashboard is about the region on purpose.
func TestQueriesKeepToTheirScope(t *testing.T) {
	type foreign struct {
		about      string
		dashboards func(uid string) bool
		vars       map[string]string
		series     map[string]string // region, cluster, shared, scope ("" = absent)
		metrics    *regexp.Regexp
	}
	clusterDashboards := func(uid string) bool { return uid != RegionUID && uid != SelfUID }
	regionDashboard := func(uid string) bool { return uid == RegionUID }
	contract := regexp.MustCompile(`^(cascade[_:]|ALERTS$)`)
	component := regexp.MustCompile(`^cascade[_:](apiserver|gateway)_`)
	cases := []foreign{
		{"a shared component, on a single cluster's dashboards", clusterDashboards,
			map[string]string{ClusterVar: "", RegionVar: ".*"},
			map[string]string{"region": "fr-par", "shared": "regional-api"}, contract},
		{"a regional incident or guard, on a single cluster's dashboards", clusterDashboards,
			map[string]string{ClusterVar: "", RegionVar: ".*"},
			map[string]string{"region": "fr-par", "scope": "region"}, regexp.MustCompile(`^ALERTS$`)},
		{"a cluster of the same name in another region", clusterDashboards,
			map[string]string{ClusterVar: "prod-1", RegionVar: "fr-par"},
			map[string]string{"region": "nl-ams", "cluster": "prod-1"}, contract},
		{"a cluster of another region", regionDashboard,
			map[string]string{RegionVar: "fr-par"},
			map[string]string{"region": "nl-ams", "cluster": "prod-1"}, contract},
		{"a shared component of another region", regionDashboard,
			map[string]string{RegionVar: "fr-par"},
			map[string]string{"region": "nl-ams", "shared": "regional-api"}, contract},
		{"a cluster's own API server or gateway, on the shared components' panels", regionDashboard,
			map[string]string{RegionVar: "fr-par"},
			map[string]string{"region": "fr-par", "cluster": "prod-1"}, component},
	}
	qs := allQueries(t)
	for _, c := range cases {
		checked := 0
		for _, q := range qs {
			if !c.dashboards(q.Dashboard) || q.Datasource != "prometheus" || q.PanelType == "variable" {
				continue
			}
			for _, sel := range selectorsOf(t, q, c.vars) {
				if !c.metrics.MatchString(sel.name) || (sel.requires("scope", "region") && clusterDashboards(q.Dashboard)) {
					continue
				}
				checked++
				admits := true
				for _, l := range []string{"region", "cluster", "shared", "scope"} {
					admits = admits && sel.matches(l, c.series[l])
				}
				if admits {
					t.Errorf("%s / %s reads %s (%v): %s", q.Dashboard, q.Panel, c.about, c.series, q.Expr)
				}
			}
		}
		require.Positive(t, checked, c.about)
	}
}

// selector is one vector selector of a query: its metric name and matchers.
type selector struct {
	name     string
	matchers []*labels.Matcher
}

// matches reports whether every matcher on label accepts value ("" is
// absent).
func (s selector) matches(label, value string) bool {
	for _, m := range s.matchers {
		if m.Name == label && !m.Matches(value) {
			return false
		}
	}
	return true
}

// requires reports whether the selector asks for label="value".
func (s selector) requires(label, value string) bool {
	return slices.ContainsFunc(s.matchers, func(m *labels.Matcher) bool {
		return m.Name == label && m.Type == labels.MatchEqual && m.Value == value
	})
}

// selectorsOf returns the vector selectors of a PromQL query after
// expanding its variables with vars.
func selectorsOf(t *testing.T, q Query, vars map[string]string) []selector {
	t.Helper()
	all := map[string]string{"instance": ".*"}
	for k, v := range vars {
		all[k] = v
	}
	expr, err := Expand(q.Expr, all)
	require.NoError(t, err)
	e, err := parser.ParseExpr(expr)
	require.NoError(t, err, expr)
	var out []selector
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			out = append(out, selector{name: vs.Name, matchers: vs.LabelMatchers})
		}
		return nil
	})
	return out
}

// TestClusterAndRegionLinkEachOther: the cluster dashboards link to their
// region's overview and back, keeping the time range and the region; the
// regional overview's table opens each cluster's overview.
func TestClusterAndRegionLinkEachOther(t *testing.T) {
	files := committed(t)
	type link struct {
		Title    string `json:"title"`
		URL      string `json:"url"`
		KeepTime bool   `json:"keepTime"`
	}
	dashLinks := func(file string) []link {
		var d struct {
			Links []link `json:"links"`
		}
		require.NoError(t, json.Unmarshal(files[file], &d))
		return d.Links
	}
	toRegion := link{"Regional overview", "/d/cascade-region/cascade-region?${region:queryparam}", true}
	for _, file := range []string{"cascade-overview.json", "cascade-apiserver.json", "cascade-node-leases.json", "cascade-gateway.json"} {
		require.Contains(t, dashLinks(file), toRegion, file)
	}
	require.Contains(t, dashLinks("cascade-region.json"), link{"Cluster overview", "/d/cascade-overview/cascade-overview?${region:queryparam}", true})
	require.Contains(t, string(files["cascade-region.json"]),
		`"url": "/d/cascade-overview/cascade-overview?${__url_time_range}&${region:queryparam}&var-cluster=${__value.raw}"`)
}
