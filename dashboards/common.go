package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/loki"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
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

// clusterSel selects one cluster's series, raw or recorded: both carry the
// target labels region and cluster. A shared regional component's series
// carry shared and no cluster: shared="" keeps them out of a cluster's
// panels even where the cluster variable is empty (a single cluster without
// labels, where cluster="" matches series without the label). The region
// keeps apart two clusters of the same name in different regions.
const clusterSel = `cluster="$cluster", region=~"$region", shared=""`

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

// dataSourceVariables are the Prometheus and Loki data source variables,
// whose defaults are the import inputs.
func dataSourceVariables() []cog.Builder[dashboard.VariableModel] {
	dsVar := func(name, label, plugin, input string) cog.Builder[dashboard.VariableModel] {
		return dashboard.NewDatasourceVariableBuilder(name).
			Label(label).
			Type(plugin).
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: ptr("${" + input + "}")},
				Value: dashboard.StringOrArrayOfString{String: ptr("${" + input + "}")},
			})
	}
	return []cog.Builder[dashboard.VariableModel]{
		dsVar(PrometheusVar, "Prometheus", "prometheus", promInput),
		dsVar(LokiVar, "Loki", "loki", lokiInput),
	}
}

// labelValues is a variable holding the values of label in the series of
// selector, refreshed with the time range.
func labelValues(name, selector, label string) *dashboard.QueryVariableBuilder {
	query := "label_values(" + selector + ", " + label + ")"
	return dashboard.NewQueryVariableBuilder(name).
		Label(name).
		Datasource(promDS()).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// clusterVariables returns the data source, region and cluster variables of
// a cluster's dashboards, with the region and cluster values read from
// metric, a series every cluster has.
func clusterVariables(metric string) []cog.Builder[dashboard.VariableModel] {
	return append(dataSourceVariables(),
		labelValues(RegionVar, metric, "region").IncludeAll(true).AllValue(".*"),
		labelValues(ClusterVar, metric+`{region=~"$region"}`, "cluster"))
}

// annotations are those every dashboard has: the incident events in Loki
// (eventsSelector), Cascade's firing alerts (alertsSelector, matchers of
// ALERTS) and the OOM kills of the API servers (oomSelector, matchers of
// cascade_apiserver_oom_kills_total, each kill tagged by byLabels).
func annotations(eventsSelector, alertsSelector, oomSelector, byLabels string) []cog.Builder[dashboard.AnnotationQuery] {
	return []cog.Builder[dashboard.AnnotationQuery]{
		dashboard.NewAnnotationQueryBuilder().
			Name("Incident events (Loki)").
			Datasource(lokiDS()).
			Enable(true).
			IconColor("red").
			Expr(eventsSelector).
			Target(logQuery(eventsSelector)).
			TitleFormat("{{phase}}").
			TagKeys("phase,cluster"),
		dashboard.NewAnnotationQueryBuilder().
			Name("Cascade alerts").
			Datasource(promDS()).
			Enable(true).
			IconColor("orange").
			Expr(`ALERTS{alertstate="firing", ` + alertsSelector + `}`).
			Step("15s").
			TitleFormat("{{alertname}}").
			TagKeys("alertname,root_cause,severity"),
		dashboard.NewAnnotationQueryBuilder().
			Name("API server OOM kills").
			Datasource(promDS()).
			Enable(true).
			IconColor("purple").
			Expr(`max by (` + byLabels + `) (increase(cascade_apiserver_oom_kills_total{` + oomSelector + `}[1m])) > 0`).
			Step("15s").
			TitleFormat("OOM kill").
			TagKeys(byLabels),
	}
}

// incidentEventsSelector selects, in Loki, the events of a cluster's
// incidents and those of a regional incident about the cluster (hit,
// recovered): rules/incident labels each with scope, phase, region and
// cluster, leaving out the empty ones.
const incidentEventsSelector = `{source="cascade", kind="incident", cluster="$cluster", region=~"$region"}`

// links returns the dashboard links of every dashboard: the other Cascade
// dashboards, keeping the time range and the variables, and the extra
// links given.
func links(extra ...cog.Builder[dashboard.DashboardLink]) []cog.Builder[dashboard.DashboardLink] {
	return append([]cog.Builder[dashboard.DashboardLink]{
		dashboard.NewDashboardLinkBuilder("Cascade").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).
			AsDropdown(false).
			IncludeVars(true).
			KeepTime(true),
	}, extra...)
}

// regionLink is a dashboard link to another dashboard of the same region,
// keeping the time range.
func regionLink(title, uid string) cog.Builder[dashboard.DashboardLink] {
	return dashboard.NewDashboardLinkBuilder(title).
		Type(dashboard.DashboardLinkTypeLink).
		Url("/d/" + uid + "/" + uid + "?${" + RegionVar + ":queryparam}").
		Icon("dashboard").
		IncludeVars(false).
		KeepTime(true)
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

// baseDashboard starts a Cascade dashboard with the shared settings and the
// given variables, annotations and links.
func baseDashboard(uid, title, description string, vars []cog.Builder[dashboard.VariableModel],
	anns []cog.Builder[dashboard.AnnotationQuery], dashLinks []cog.Builder[dashboard.DashboardLink]) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Refresh("30s").
		Variables(vars).
		Annotations(anns).
		Links(dashLinks)
}

// newDashboard starts a dashboard about one cluster: cluster and region
// variables (values read from varMetric), the annotations of the cluster
// (its own alerts, not its region's), and a link to its region's overview.
func newDashboard(uid, title, description, varMetric string) *dashboard.DashboardBuilder {
	return baseDashboard(uid, title, description,
		clusterVariables(varMetric),
		annotations(incidentEventsSelector, `scope!="region", `+clusterSel, clusterSel, "replica"),
		links(regionLink("Regional overview", RegionUID)))
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

// incidentStat names the incidents firing now (the legend of each series),
// or says noValue.
func incidentStat(title, description, noValue string, w uint32, targets ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS()).
		TextMode(common.BigValueTextModeName).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		NoValue(noValue).
		Mappings(valueText("1", "firing", "red")).
		Thresholds(thresholds("red")).
		Span(w).Height(4)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// guardStat says whether automation may auto-heal nodes now, from an
// auto-heal guard that is 1 while on.
func guardStat(title, description, expr string, w uint32) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS()).
		WithTarget(promInstant(expr, "")).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		Mappings(valueText("0", "nodes may be auto-healed", "green", "1", "DO NOT auto-heal nodes", "red")).
		Thresholds(thresholds("green", 1.0, "red")).
		Span(w).Height(4)
}

// stateRows is a full-width state timeline, one row per series.
func stateRows(title, description string, h uint32, targets ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	p := statetimeline.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(promDS()).
		ShowValue(common.VisibilityModeNever).
		RowHeight(0.8).
		Span(24).Height(h)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// onOffRows shows series that are 1 while on and 0 while off (an incident,
// a guard).
func onOffRows(title, description string, h uint32, targets ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	return stateRows(title, description, h, targets...).
		Mappings(valueText("0", "clear", "green", "1", "on", "red")).
		Thresholds(thresholds("green", 1.0, "red")).
		MergeValues(true)
}

// whileRows shows indicators: 1 while they hold, absent otherwise.
func whileRows(title, description string, h uint32, targets ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	return stateRows(title, description, h, targets...).
		Mappings(valueText("1", "yes", "red")).
		Thresholds(thresholds("red")).
		AlwaysInsertNulls()
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
