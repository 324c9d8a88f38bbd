package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/loki"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Names of the template variables every dashboard has.
const (
	// PrometheusVar picks the Prometheus data source; on import its default
	// is the data source chosen for the DS_PROMETHEUS input.
	PrometheusVar = "datasource"
	// LokiVar picks the Loki data source (DS_LOKI on import).
	LokiVar = "loki_datasource"
	// ClusterVar and RegionVar select what the panels show.
	ClusterVar = "cluster"
	RegionVar  = "region"
)

// Import inputs: Grafana's import asks for one data source per input and
// replaces ${NAME} with its uid everywhere in the file.
const (
	promInput = "DS_PROMETHEUS"
	lokiInput = "DS_LOKI"
)

// Label matchers of the queries. Raw series carry the target labels cluster
// and region; the recording rules aggregate by cluster only. In a
// single-cluster setup the cluster variable is empty and cluster="" matches
// series without the label.
const (
	rawSel = `cluster="$cluster", region=~"$region"`
	recSel = `cluster="$cluster"`
)

// cogLink is a dashboard or panel link under construction.
type cogLink = cog.Builder[dashboard.DashboardLink]

func ptr[T any](v T) *T { return &v }

func promDS() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${" + PrometheusVar + "}")}
}

func lokiDS() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr("loki"), Uid: ptr("${" + LokiVar + "}")}
}

// prom is one Prometheus range query with its legend.
func prom(expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().Datasource(promDS()).Expr(expr).Range()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// promInstant is a Prometheus query for the value at the end of the range.
func promInstant(expr, legend string) *prometheus.DataqueryBuilder {
	return prom(expr, legend).Instant()
}

// logQuery is one Loki log query.
func logQuery(expr string) *loki.DataqueryBuilder {
	return loki.NewDataqueryBuilder().Datasource(lokiDS()).Expr(expr).QueryType("range")
}

// variables returns the data source, region and cluster variables, with
// the region and cluster values read from metric, a series every cluster
// has.
func variables(metric string) []cog.Builder[dashboard.VariableModel] {
	dsVar := func(name, label, plugin, input string) cog.Builder[dashboard.VariableModel] {
		return dashboard.NewDatasourceVariableBuilder(name).
			Label(label).
			Type(plugin).
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: ptr("${" + input + "}")},
				Value: dashboard.StringOrArrayOfString{String: ptr("${" + input + "}")},
			})
	}
	labelValues := func(name, query string) *dashboard.QueryVariableBuilder {
		return dashboard.NewQueryVariableBuilder(name).
			Label(name).
			Datasource(promDS()).
			Query(dashboard.StringOrMap{String: ptr(query)}).
			Definition(query).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc)
	}
	return []cog.Builder[dashboard.VariableModel]{
		dsVar(PrometheusVar, "Prometheus", "prometheus", promInput),
		dsVar(LokiVar, "Loki", "loki", lokiInput),
		labelValues(RegionVar, "label_values("+metric+", region)").
			IncludeAll(true).AllValue(".*"),
		labelValues(ClusterVar, "label_values("+metric+`{region=~"$region"}, cluster)`),
	}
}

// annotations are shared by every dashboard: firing alerts of Cascade's
// rules, OOM kills, and the incident phase events Cascade ships to Loki.
func annotations() []cog.Builder[dashboard.AnnotationQuery] {
	return []cog.Builder[dashboard.AnnotationQuery]{
		dashboard.NewAnnotationQueryBuilder().
			Name("Incident events (Loki)").
			Datasource(lokiDS()).
			Enable(true).
			IconColor("red").
			Expr(incidentEventsSelector).
			Target(logQuery(incidentEventsSelector)).
			TitleFormat("{{phase}}").
			TagKeys("phase,cluster"),
		dashboard.NewAnnotationQueryBuilder().
			Name("Cascade alerts").
			Datasource(promDS()).
			Enable(true).
			IconColor("orange").
			Expr(`ALERTS{alertstate="firing", ` + recSel + `}`).
			Step("15s").
			TitleFormat("{{alertname}}").
			TagKeys("alertname,root_cause,severity"),
		dashboard.NewAnnotationQueryBuilder().
			Name("API server OOM kills").
			Datasource(promDS()).
			Enable(true).
			IconColor("purple").
			Expr(`max by (replica) (increase(cascade_apiserver_oom_kills_total{` + rawSel + `}[1m])) > 0`).
			Step("15s").
			TitleFormat("OOM kill").
			TagKeys("replica"),
	}
}

// incidentEventsSelector selects the phase events of incidents
// (rules/incident) in Loki.
const incidentEventsSelector = `{source="cascade", kind="incident", cluster="$cluster"}`

// links returns the dashboard links shown on every dashboard: the other
// Cascade dashboards, keeping the time range and the variables.
func links() []cog.Builder[dashboard.DashboardLink] {
	return []cog.Builder[dashboard.DashboardLink]{
		dashboard.NewDashboardLinkBuilder("Cascade").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).
			AsDropdown(false).
			IncludeVars(true).
			KeepTime(true),
	}
}

// drillDown is a panel link to another Cascade dashboard, keeping time
// range and variables.
func drillDown(title, uid string) cog.Builder[dashboard.DashboardLink] {
	return dashboard.NewDashboardLinkBuilder(title).
		Type(dashboard.DashboardLinkTypeLink).
		Url("/d/" + uid + "?${__url_time_range}&${" + ClusterVar + ":queryparam}&${" + RegionVar + ":queryparam}").
		IncludeVars(false).
		KeepTime(false)
}

// newDashboard starts a Cascade dashboard with the shared settings.
func newDashboard(uid, title, description, varMetric string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Refresh("30s").
		Variables(variables(varMetric)).
		Annotations(annotations()).
		Links(links())
}

// series is a time series panel with the common look.
func series(title, unit string, w, h uint32) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Datasource(promDS()).
		Unit(unit).
		Span(w).
		Height(h).
		FillOpacity(10).
		LineWidth(1).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// overrideProps is a shorthand for field override properties.
func overrideProps(kv ...any) []dashboard.DynamicConfigValue {
	var out []dashboard.DynamicConfigValue
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, dashboard.DynamicConfigValue{Id: kv[i].(string), Value: kv[i+1]})
	}
	return out
}

// dashed draws the matching series as a dashed line without fill.
func dashed() []dashboard.DynamicConfigValue {
	return overrideProps(
		"custom.lineStyle", map[string]any{"fill": "dash", "dash": []int{10, 10}},
		"custom.fillOpacity", 0,
		"custom.lineWidth", 2,
	)
}

// color fixes the colour of the matching series.
func color(c string) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": c}}
}

// thresholds returns absolute thresholds: base colour, then value/colour
// pairs.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Value: nil, Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: ptr(steps[i].(float64)), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// valueText maps exact values to a text and colour.
func valueText(pairs ...string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i := 0; i+2 < len(pairs); i += 3 {
		opts[pairs[i]] = dashboard.ValueMappingResult{Text: ptr(pairs[i+1]), Color: ptr(pairs[i+2]), Index: ptr(int32(i / 3))}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}
