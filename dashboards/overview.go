package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/stat"

	"github.com/cascade-sre/cascade/rules"
)

// Titles of the overview panels that the tests and the picture look up.
const (
	IncidentPanel = "Incident and auto-heal guard"
	SignalsPanel  = "Control-plane signals and symptoms"
	MemoryPanel   = "API server memory against limit (OOM kills marked)"
	LeasesPanel   = "Node leases by state"
	LeaseAgePanel = "Node lease age"
	GatewayPanel  = "Gateway requests by client class, with timeouts"
)

// Queries shared by the overview and the detail dashboards.
const (
	incidentByRootCause = `max by (root_cause) (ALERTS{alertname="` + rules.IncidentAlert + `", alertstate="firing", scope!="region", ` + clusterSel + `})`
	// The regional incident of the cluster's region, if any: its own API
	// server may be healthy while a shared component fails its nodes.
	regionalIncidentOfCluster = `max by (region, shared, root_cause) (ALERTS{alertname="` + rules.IncidentAlert + `", alertstate="firing", scope="region", region=~"$region"} and on (region) cascade:cluster:present{` + clusterSel + `})`
	workingSetByReplica       = `max by (replica) (cascade_apiserver_memory_working_set_bytes{` + clusterSel + `})`
	limitByReplica            = `max by (replica) (cascade_apiserver_memory_limit_bytes{` + clusterSel + `})`
	oomKillsByReplica         = `max by (replica) (increase(cascade_apiserver_oom_kills_total{` + clusterSel + `}[$__rate_interval])) > 0`
	leasesByState             = `max by (state) (cascade_node_leases{` + clusterSel + `})`
	nodesNotReady             = `sum(max by (condition) (cascade_nodes{condition=~"not_ready|unknown", ` + clusterSel + `}))`
	leaseAge                  = `time() - max by (node) (cascade_node_lease_renew_timestamp_seconds{` + clusterSel + `})`
	requestsByClient          = `sum by (client) (rate(cascade_gateway_requests_total{` + clusterSel + `}[$__rate_interval]))`
	timeoutsByClient          = `sum by (client) (rate(cascade_gateway_timeouts_total{` + clusterSel + `}[$__rate_interval]))`
	requestsBaseline          = `cascade:gateway_requests:rate1m_baseline1h{` + clusterSel + `}`
)

func overview() (dashboard.Dashboard, error) {
	b := newDashboard(OverviewUID, "Cascade overview",
		"One screen, one time axis: did API server memory hit its limit, did the node leases expire, did the gateway flood? The incident, its root cause and the auto-heal guard on top.",
		"cascade_apiserver_up")

	// Now: the incident, its root cause, the guard, and the three signals in
	// one number each.
	b.WithPanel(incidentStat("Incident now",
		rules.IncidentAlert+" firing for this cluster, named by its root cause, and the regional incident of its region (a shared component failed, or many clusters fell together): see the regional overview.",
		"no incident", 6,
		promInstant(incidentByRootCause, "{{root_cause}}"),
		promInstant(regionalIncidentOfCluster, "regional: {{root_cause}} {{shared}}")).
		Links([]cogLink{drillDown("Regional overview", RegionUID)}))
	b.WithPanel(guardStat("Auto-heal guard",
		"cascade:autoheal_guard: 1 while nodes fail fleet-wide because of the control plane. Automation must not repair or replace nodes while it holds.",
		`max(cascade:autoheal_guard{`+clusterSel+`})`, 6))
	b.WithPanel(stat.NewPanelBuilder().
		Title("API server memory (peak replica)").
		Datasource(promDS()).
		WithTarget(promInstant(`cascade:apiserver_memory_utilisation:max{`+clusterSel+`}`, "")).
		Unit("percentunit").
		Thresholds(thresholds("green", 0.6, "orange", 0.9, "red")).
		Span(4).Height(4).
		Links([]cogLink{drillDown("API server memory", APIServerUID)}))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Leases late or expired").
		Datasource(promDS()).
		WithTarget(promInstant(`cascade:node_leases_not_fresh:ratio{`+clusterSel+`}`, "")).
		Unit("percentunit").
		NoValue("not visible").
		Thresholds(thresholds("green", 0.1, "orange", 0.5, "red")).
		Span(4).Height(4).
		Links([]cogLink{drillDown("Node leases", LeasesUID)}))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Gateway requests / baseline").
		Datasource(promDS()).
		WithTarget(promInstant(`cascade:gateway_requests:rate1m{`+clusterSel+`} / on (region, cluster) cascade:gateway_requests:rate1m_baseline1h{`+clusterSel+`}`, "")).
		Unit("x").
		Decimals(1).
		Thresholds(thresholds("green", 2.0, "orange", 3.0, "red")).
		Span(4).Height(4).
		Links([]cogLink{drillDown("Gateway", GatewayUID)}))

	// History on one time axis.
	b.WithPanel(onOffRows(IncidentPanel,
		"The incident alert (with its root cause), the regional incident of the cluster's region, and the auto-heal guard over time.", 4,
		prom(incidentByRootCause, "incident: {{root_cause}}"),
		prom(regionalIncidentOfCluster, "regional incident: {{root_cause}} {{shared}}"),
		prom(`max(cascade:autoheal_guard{`+clusterSel+`})`, "auto-heal guard")).
		Links([]cogLink{drillDown("Regional overview", RegionUID)}))
	b.WithPanel(whileRows(SignalsPanel,
		"The control-plane signals and the symptoms the incident rule correlates (cascade:*:active recording rules; shown while they hold).", 6,
		prom(`cascade:apiserver_oom:active{`+clusterSel+`}`, "API server OOM kill"),
		prom(`cascade:apiserver_memory_near_limit:active{`+clusterSel+`}`, "API server memory ≥ 90 %"),
		prom(`cascade:apiserver_unreachable:active{`+clusterSel+`}`, "API server unreachable"),
		prom(`cascade:node_symptoms:active{`+clusterSel+`}`, "node leases / readiness failing"),
		prom(`cascade:gateway_symptoms:active{`+clusterSel+`}`, "kubelets failing at the gateway")))

	// The three signals, stacked.
	b.WithPanel(series(MemoryPanel, "bytes", 24, 8).
		Description("Working set of each API server replica against its limit (dashed); OOM kills as red points on the right axis.").
		WithTarget(prom(workingSetByReplica, "working set {{replica}}")).
		WithTarget(prom(limitByReplica, "limit {{replica}}")).
		WithTarget(prom(oomKillsByReplica, "OOM kill {{replica}}")).
		OverrideByRegexp("^limit ", dashed()).
		OverrideByRegexp("^OOM kill ", oomPoints()).
		Links([]cogLink{drillDown("API server memory", APIServerUID)}))
	b.WithPanel(series(LeasesPanel, "short", 24, 7).
		Description("Leases fresh (renewed within a quarter of their duration), late and expired, stacked; nodes not Ready dashed. Absent while the lease watch is down: see the signals above.").
		WithTarget(prom(leasesByState, "{{state}}")).
		WithTarget(prom(nodesNotReady, "nodes not Ready")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByName("fresh", []dashboard.DynamicConfigValue{color("green")}).
		OverrideByName("late", []dashboard.DynamicConfigValue{color("orange")}).
		OverrideByName("expired", []dashboard.DynamicConfigValue{color("red")}).
		OverrideByName("nodes not Ready", append(dashed(), color("purple"), unstacked())).
		Links([]cogLink{drillDown("Node leases", LeasesUID)}))
	b.WithPanel(leaseAgeHeatmap(24, 6))
	b.WithPanel(series(GatewayPanel, "reqps", 24, 8).
		Description("Requests per second through the API gateway by client class and in total, upstream timeouts (red, dashed), and the total's recent normal (median of the last hour, grey dashed).").
		WithTarget(prom(requestsByClient, "{{client}}")).
		WithTarget(prom(timeoutsByClient, "timeouts {{client}}")).
		WithTarget(prom(requestsBaseline, "baseline")).
		WithTarget(prom(`cascade:gateway_requests:rate1m{`+clusterSel+`}`, "total")).
		OverrideByRegexp("^timeouts ", append(dashed(), color("red"))).
		OverrideByName("baseline", append(dashed(), color("text"))).
		OverrideByName("total", overrideProps("custom.lineWidth", 2, "custom.fillOpacity", 0)).
		Links([]cogLink{drillDown("Gateway", GatewayUID)}))
	b.WithPanel(logs.NewPanelBuilder().
		Title("Incident events").
		Description("Phase changes of incidents (onset, escalation, mitigation, recovery, resolved) with their root cause and evidence, as Cascade ships them to Loki.").
		Datasource(lokiDS()).
		WithTarget(logQuery(incidentEventsSelector)).
		ShowTime(true).
		WrapLogMessage(true).
		SortOrder(common.LogsSortOrderAscending).
		Span(24).Height(6))
	return b.Build()
}

// oomPoints draws OOM kills as big red points on the right axis.
func oomPoints() []dashboard.DynamicConfigValue {
	return append(overrideProps(
		"custom.drawStyle", "points",
		"custom.pointSize", 12,
		"custom.axisPlacement", "right",
		"custom.axisLabel", "OOM kills",
		"unit", "short",
	), color("red"))
}

// unstacked takes the matching series out of the stack.
func unstacked() dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "custom.stacking", Value: map[string]any{"mode": "none", "group": "A"}}
}

// leaseAgeHeatmap shows how old the fleet's leases are: one cell row per
// age band, Grafana bucketing the per-node ages at each step.
func leaseAgeHeatmap(w, h uint32) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title(LeaseAgePanel).
		Description("Seconds since each node renewed its lease, as a heatmap over nodes (needs the per-node series). Renewals are every 10 s; a lease expires at 40 s.").
		Datasource(promDS()).
		WithTarget(prom(leaseAge, "{{node}}")).
		Calculate(true).
		Calculation(common.NewHeatmapCalculationOptionsBuilder().
			YBuckets(common.NewHeatmapCalculationBucketConfigBuilder().
				Mode(common.HeatmapCalculationModeSize).
				Value("10"))).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s").Min(0)).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).
			Scheme("Oranges").
			Steps(64)).
		Span(w).Height(h)
}
