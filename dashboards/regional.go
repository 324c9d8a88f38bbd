package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"

	"github.com/cascade-sre/cascade/rules"
)

// Titles of the regional overview's panels that the tests look up.
const (
	RegionIncidentPanel      = "Regional incident and auto-heal guard"
	RegionClustersHitPanel   = "Clusters hit"
	RegionClusterStatesPanel = "Clusters by state"
	RegionClusterEachPanel   = "Clusters by state, each"
	RegionClusterTablePanel  = "Clusters of the region"
	RegionSharedMemoryPanel  = "Shared API memory against its limit (OOM kills marked)"
	RegionEventsPanel        = "Regional incident events"
)

// Label matchers of the regional overview (rules/README.md, "Regions and
// shared components"). The regional rules are per region; the clusters'
// rules per region and cluster; a shared component's series carry shared
// (its name) and no cluster.
const (
	regionSel        = `region="$region"`
	regionClusterSel = `region="$region", shared=""`
	sharedSel        = `region="$region", shared!=""`
)

// Queries of the regional overview.
const (
	regionIncident = `max by (scope, shared, root_cause) (label_replace(ALERTS{alertname="` + rules.IncidentAlert + `", alertstate="firing", scope="region", ` + regionSel + `}, "shared", "no shared component", "shared", ""))`
	// clustersHit and shareHit are 0, not absent, while no cluster is hit
	// (the recording rules count only the clusters hit); one series
	// throughout, not one per side of the or.
	clustersHit = `max by (region) (cascade:region_clusters_hit:count{` + regionSel + `} or on (region) 0 * cascade:region_clusters:count{` + regionSel + `})`
	shareHit    = `max by (region) (cascade:region_clusters_hit:ratio{` + regionSel + `} or on (region) 0 * cascade:region_clusters:count{` + regionSel + `})`
	// clusterState is one number per cluster: 0 not hit, 1 hit with the
	// auto-heal guard off, 2 guard on without being hit (its own incident),
	// 3 hit with the guard on.
	clusterState = clusterHit + ` + on (region, cluster) 2 * cascade:autoheal_guard{` + regionClusterSel + `}`
	// clusterHit is 1 for every cluster of the region hit now, 0 for the
	// others.
	clusterHit = `(cascade:cluster_hit:active{` + regionClusterSel + `} or on (region, cluster) 0 * cascade:cluster:present{` + regionClusterSel + `})`
	// regionEventsSelector selects the regional incident's events in Loki:
	// its phases and its clusters hit and recovered.
	regionEventsSelector = `{source="cascade", kind="incident", scope="region", ` + regionSel + `}`
)

// clusterStates maps clusterState to a text and colour.
func clusterStates() []dashboard.ValueMapping {
	return valueText("0", "not hit", "green", "1", "hit, guard OFF", "orange", "2", "guard on", "blue", "3", "hit, guard on", "red")
}

func regional() (dashboard.Dashboard, error) {
	b := baseDashboard(RegionUID, "Cascade region",
		"One region of many clusters and the shared components that serve them all (the provider's regional API, its gateway): the regional incident and the shared component named as its root cause, which clusters it hit and whether their auto-heal guard is on, the shared API's memory against its limit, and the kubelets failing at the shared gateway.",
		append(dataSourceVariables(), labelValues(RegionVar, "cascade:region_clusters:count", "region")),
		annotations(regionEventsSelector, regionSel+`, cluster=""`, sharedSel, "shared,replica"),
		links(regionLink("Cluster overview", OverviewUID)))

	// Now.
	b.WithPanel(incidentStat("Regional incident now",
		rules.IncidentAlert+" with scope=\"region\": its root cause and the shared component that failed first (none when many clusters fell together with no shared signal: regional_common_cause).",
		"no regional incident", 8,
		promInstant(regionIncident, "{{root_cause}} · {{shared}}")))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Clusters hit now").
		Description("cascade:region_clusters_hit:count of cascade:region_clusters:count: clusters whose leases or nodes fail (half or more, 2 or more) or whose kubelets fail at their own gateway.").
		Datasource(promDS()).
		WithTarget(promInstant(clustersHit, "hit")).
		WithTarget(promInstant(`cascade:region_clusters:count{`+regionSel+`}`, "clusters")).
		TextMode(common.BigValueTextModeValueAndName).
		GraphMode(common.BigValueGraphModeNone).
		Decimals(0).
		Span(4).Height(4))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Share of clusters hit").
		Description("cascade:region_clusters_hit:ratio. The regional incident needs 3 clusters and 5 % of them after a shared component's failure, or 3 and 20 % falling within 5 minutes with no shared signal.").
		Datasource(promDS()).
		WithTarget(promInstant(shareHit, "")).
		Unit("percentunit").
		Thresholds(thresholds("green", 0.05, "orange", 0.2, "red")).
		Span(4).Height(4))
	b.WithPanel(guardStat("Regional auto-heal guard",
		"cascade:region_autoheal_guard:active: 1 while clusters are hit and the regional incident holds. Every hit cluster's own cascade:autoheal_guard is then on: automation must not repair or replace their nodes.",
		`max(cascade:region_autoheal_guard:active{`+regionSel+`})`, 4))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Shared API memory (peak replica)").
		Datasource(promDS()).
		WithTarget(promInstant(`max(cascade:apiserver_memory_utilisation:max{`+sharedSel+`})`, "")).
		Unit("percentunit").
		Thresholds(thresholds("green", 0.6, "orange", 0.9, "red")).
		Span(4).Height(4))

	// The incident and its root cause on one time axis.
	b.WithPanel(onOffRows(RegionIncidentPanel,
		"The regional incident (root cause, shared component) and the regional auto-heal guard over time.", 4,
		prom(regionIncident, "incident: {{root_cause}} · {{shared}}"),
		prom(`max(cascade:region_autoheal_guard:active{`+regionSel+`})`, "regional auto-heal guard")))
	b.WithPanel(whileRows("Shared components' signals",
		"What the regional root cause is chosen from: a shared component's OOM kill, memory at 90 % of its limit, every replica unreachable (cascade:*:active with shared set), and kubelets failing at a shared gateway. The one that held first, before the clusters were hit, is the root cause.", 5,
		prom(`cascade:apiserver_oom:active{`+sharedSel+`}`, "{{shared}}: OOM kill"),
		prom(`cascade:apiserver_memory_near_limit:active{`+sharedSel+`}`, "{{shared}}: memory ≥ 90 %"),
		prom(`cascade:apiserver_unreachable:active{`+sharedSel+`}`, "{{shared}}: unreachable"),
		prom(`cascade:gateway_symptoms:active{`+sharedSel+`}`, "{{shared}}: kubelets failing")))

	// The clusters.
	b.WithPanel(series(RegionClustersHitPanel, "short", 12, 8).
		Description("Clusters hit (cascade:region_clusters_hit:count) against the clusters of the region (dashed), and their share on the right axis.").
		WithTarget(prom(clustersHit, "clusters hit")).
		WithTarget(prom(`cascade:region_clusters:count{`+regionSel+`}`, "clusters")).
		WithTarget(prom(shareHit, "share hit")).
		OverrideByName("clusters hit", []dashboard.DynamicConfigValue{color("red")}).
		OverrideByName("clusters", append(dashed(), color("text"))).
		OverrideByName("share hit", append(overrideProps(
			"unit", "percentunit",
			"custom.axisPlacement", "right",
			"custom.fillOpacity", 0,
			"max", 1,
		), color("orange"))).
		Min(0))
	b.WithPanel(series(RegionClusterStatesPanel, "short", 12, 8).
		Description("How many clusters are in each state, stacked: hit (half or more of their leases or nodes failing, or kubelets failing at their gateway) or not, auto-heal guard on or not. Hit with the guard off is what must not last: automation may replace nodes that are only refused.").
		WithTarget(prom(`count_values("state", `+clusterState+`)`, "{{state}}")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByName("0", append(overrideProps("displayName", "not hit"), color("green"))).
		OverrideByName("1", append(overrideProps("displayName", "hit, guard OFF"), color("orange"))).
		OverrideByName("2", append(overrideProps("displayName", "guard on"), color("blue"))).
		OverrideByName("3", append(overrideProps("displayName", "hit, guard on"), color("red"))).
		Min(0))
	b.WithPanel(statetimeline.NewPanelBuilder().
		Title(RegionClusterEachPanel).
		Description("Each cluster of the region over time: hit or not (cascade:cluster_hit:active), auto-heal guard on or not (cascade:autoheal_guard). The table below links to each cluster's overview.").
		Datasource(promDS()).
		WithTarget(prom(`max by (cluster) (`+clusterState+`)`, "{{cluster}}")).
		Mappings(clusterStates()).
		Thresholds(thresholds("green")).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		RowHeight(0.9).
		Span(24).Height(10))
	b.WithPanel(series("Leases late or expired, each cluster", "percentunit", 24, 8).
		Description("cascade:node_leases_not_fresh:ratio of each cluster of the region: a cluster is hit at 50 % (and 2 or more). Absent while a cluster's lease watch is down.").
		WithTarget(prom(`max by (cluster) (cascade:node_leases_not_fresh:ratio{`+regionClusterSel+`})`, "{{cluster}}")).
		Thresholds(thresholds("green", 0.5, "red")).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementRight).
			ShowLegend(true)).
		Min(0).Max(1))
	b.WithPanel(clusterTable())

	// The shared API.
	b.WithPanel(series(RegionSharedMemoryPanel, "percentunit", 24, 8).
		Description("Working set of each replica of the shared components as a share of its limit (cascade:apiserver_memory_utilisation:ratio with shared set; 90 % and the limit dashed), and their OOM kills (cascade_apiserver_oom_kills_total) as red points on the right axis.").
		WithTarget(prom(`cascade:apiserver_memory_utilisation:ratio{`+sharedSel+`}`, "{{shared}} {{replica}}")).
		WithTarget(prom(`max by (shared, replica) (increase(cascade_apiserver_oom_kills_total{`+sharedSel+`}[$__rate_interval])) > 0`, "OOM kill {{shared}} {{replica}}")).
		OverrideByRegexp("^OOM kill ", oomPoints()).
		Thresholds(thresholds("green", 0.9, "orange", 1.0, "red")).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Min(0))
	b.WithPanel(series("Shared API working set and limit", "bytes", 12, 7).
		Description("Working set of each replica of the shared components against its limit (dashed): raising the limit shows here.").
		WithTarget(prom(`max by (shared, replica) (cascade_apiserver_memory_working_set_bytes{`+sharedSel+`})`, "working set {{shared}} {{replica}}")).
		WithTarget(prom(`max by (shared, replica) (cascade_apiserver_memory_limit_bytes{`+sharedSel+`})`, "limit {{shared}} {{replica}}")).
		OverrideByRegexp("^limit ", dashed()))
	b.WithPanel(series("Shared API replicas answering", "short", 12, 7).
		Description("cascade:apiserver_replicas_up:sum of cascade:apiserver_replicas:count (dashed) for each shared component.").
		WithTarget(prom(`cascade:apiserver_replicas_up:sum{`+sharedSel+`}`, "up {{shared}}")).
		WithTarget(prom(`cascade:apiserver_replicas:count{`+sharedSel+`}`, "replicas {{shared}}")).
		OverrideByRegexp("^replicas ", dashed()).
		Min(0))

	// The shared gateway.
	b.WithPanel(series("Shared gateway requests by client class, with timeouts", "reqps", 12, 8).
		Description("Requests per second through the shared gateways by client class and in total, upstream timeouts (red, dashed), and the total's recent normal (median of the last hour, grey dashed): kubelets retrying flood it.").
		WithTarget(prom(`sum by (shared, client) (rate(cascade_gateway_requests_total{`+sharedSel+`}[$__rate_interval]))`, "{{shared}} {{client}}")).
		WithTarget(prom(`sum by (shared, client) (rate(cascade_gateway_timeouts_total{`+sharedSel+`}[$__rate_interval]))`, "timeouts {{shared}} {{client}}")).
		WithTarget(prom(`cascade:gateway_requests:rate1m_baseline1h{`+sharedSel+`}`, "baseline {{shared}}")).
		WithTarget(prom(`cascade:gateway_requests:rate1m{`+sharedSel+`}`, "total {{shared}}")).
		OverrideByRegexp("^timeouts ", append(dashed(), color("red"))).
		OverrideByRegexp("^baseline ", append(dashed(), color("text"))).
		OverrideByRegexp("^total ", overrideProps("custom.lineWidth", 2, "custom.fillOpacity", 0)))
	b.WithPanel(series("Kubelet requests failing at the shared gateway", "reqps", 12, 8).
		Description("Kubelet requests per second answered 401 (nodes that cannot authenticate), 5xx or not at all (code 0), by code; their total as the rules count it (cascade:gateway_kubelet_errors:rate1m, thick), upstream timeouts (dashed red) and all kubelet requests (grey dashed).").
		WithTarget(prom(`sum by (shared, code) (rate(cascade_gateway_requests_total{`+sharedSel+`, client="kubelet", code=~"401|5..|0"}[$__rate_interval]))`, "{{shared}} {{code}}")).
		WithTarget(prom(`cascade:gateway_kubelet_errors:rate1m{`+sharedSel+`}`, "failing {{shared}}")).
		WithTarget(prom(`cascade:gateway_kubelet_timeouts:rate1m{`+sharedSel+`}`, "timeouts {{shared}}")).
		WithTarget(prom(`cascade:gateway_kubelet_requests:rate1m{`+sharedSel+`}`, "kubelet requests {{shared}}")).
		OverrideByRegexp("^failing ", append(overrideProps("custom.lineWidth", 3, "custom.fillOpacity", 0), color("red"))).
		OverrideByRegexp("^timeouts ", append(dashed(), color("dark-red"))).
		OverrideByRegexp("^kubelet requests ", append(dashed(), color("text"))).
		Min(0))

	b.WithPanel(logs.NewPanelBuilder().
		Title(RegionEventsPanel).
		Description("The regional incident's events as Cascade ships them to Loki: its phases (onset with the shared component and root cause, escalation, mitigation, recovery, resolved) and each cluster hit and recovered.").
		Datasource(lokiDS()).
		WithTarget(logQuery(regionEventsSelector)).
		ShowTime(true).
		WrapLogMessage(true).
		SortOrder(common.LogsSortOrderAscending).
		Span(24).Height(8))
	return b.Build()
}

// clusterTable lists the clusters of the region at the end of the time
// range: hit, guard, leases late or expired, nodes not Ready, each cluster
// linking to its overview.
func clusterTable() *table.PanelBuilder {
	column := func(expr, refID string) *prometheus.DataqueryBuilder {
		return promInstant(`max by (cluster) (`+expr+`)`, "").Format(prometheus.PromQueryFormatTable).RefId(refID)
	}
	yesNo := func(no, yes string) []dashboard.DynamicConfigValue {
		return overrideProps(
			"mappings", valueText("0", no, "transparent", "1", yes, "red"),
			"custom.cellOptions", map[string]any{"type": "color-background", "mode": "basic"},
		)
	}
	half, _ := thresholds("green", 0.5, "red").Build()
	share := func() []dashboard.DynamicConfigValue {
		return overrideProps(
			"unit", "percentunit",
			"thresholds", half,
			"custom.cellOptions", map[string]any{"type": "color-text"},
		)
	}
	toOverview := []map[string]any{{
		"title": "Overview of cluster ${__value.raw}",
		"url":   "/d/" + OverviewUID + "/" + OverviewUID + "?${__url_time_range}&${" + RegionVar + ":queryparam}&var-" + ClusterVar + "=${__value.raw}",
	}}
	return table.NewPanelBuilder().
		Title(RegionClusterTablePanel).
		Description("Every cluster of the region at the end of the time range, hit ones first: hit (cascade:cluster_hit:active), auto-heal guard (cascade:autoheal_guard), share of leases late or expired, share of nodes not Ready. A cluster's name opens its overview.").
		Datasource(promDS()).
		WithTarget(column(clusterHit, "A")).
		WithTarget(column(`cascade:autoheal_guard{`+regionClusterSel+`}`, "B")).
		WithTarget(column(`cascade:node_leases_not_fresh:ratio{`+regionClusterSel+`}`, "C")).
		WithTarget(column(`cascade:nodes_not_ready:ratio{`+regionClusterSel+`}`, "D")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
			"indexByName":   map[string]any{"cluster": 0, "Value #A": 1, "Value #B": 2, "Value #C": 3, "Value #D": 4},
			"renameByName": map[string]any{
				"Value #A": "hit", "Value #B": "auto-heal guard",
				"Value #C": "leases late or expired", "Value #D": "nodes not Ready",
			},
		}}).
		SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("hit").Desc(true)}).
		OverrideByName("cluster", overrideProps("links", toOverview)).
		OverrideByName("hit", yesNo("no", "hit")).
		OverrideByName("auto-heal guard", yesNo("off", "ON")).
		OverrideByName("leases late or expired", share()).
		OverrideByName("nodes not Ready", share()).
		Span(24).Height(10)
}
