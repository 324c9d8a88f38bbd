package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
)

func leases() (dashboard.Dashboard, error) {
	b := newDashboard(LeasesUID, "Cascade node leases",
		"Node leases fresh, late and expired, the oldest leases, nodes not Ready, and the health of the lease watch itself: when the API that serves leases is down, lease counts disappear instead of turning expired.",
		"cascade_node_lease_watch_up")
	b.WithPanel(series("Leases by state", "short", 12, 8).
		Description("cascade_node_leases: fresh (age below a quarter of the lease duration), late, expired (age at or above the duration).").
		WithTarget(prom(leasesByState, "{{state}}")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByName("fresh", []dashboard.DynamicConfigValue{color("green")}).
		OverrideByName("late", []dashboard.DynamicConfigValue{color("orange")}).
		OverrideByName("expired", []dashboard.DynamicConfigValue{color("red")}))
	b.WithPanel(series("Nodes by Ready condition", "short", 12, 8).
		Description("cascade_nodes by condition: ready, not_ready, unknown.").
		WithTarget(prom(`max by (condition) (cascade_nodes{`+clusterSel+`})`, "{{condition}}")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByName("ready", []dashboard.DynamicConfigValue{color("green")}).
		OverrideByName("not_ready", []dashboard.DynamicConfigValue{color("red")}).
		OverrideByName("unknown", []dashboard.DynamicConfigValue{color("orange")}))
	b.WithPanel(series("Share of leases late or expired, and of nodes not Ready", "percentunit", 12, 7).
		Description("cascade:node_leases_not_fresh:ratio and cascade:nodes_not_ready:ratio: the node symptom holds at 50 % (and 10 or more).").
		WithTarget(prom(`cascade:node_leases_not_fresh:ratio{`+clusterSel+`}`, "leases late or expired")).
		WithTarget(prom(`cascade:nodes_not_ready:ratio{`+clusterSel+`}`, "nodes not Ready")).
		Thresholds(thresholds("green", 0.5, "red")).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Min(0).Max(1))
	b.WithPanel(leaseAgeHeatmap(12, 7))
	b.WithPanel(table.NewPanelBuilder().
		Title("Oldest leases").
		Description("The 20 nodes whose lease was renewed longest ago, at the end of the range (needs the per-node series).").
		Datasource(promDS()).
		WithTarget(promInstant(`topk(20, `+leaseAge+`)`, "{{node}}").Format(prometheus.PromQueryFormatTable)).
		Unit("s").
		Span(12).Height(8))
	b.WithPanel(statetimeline.NewPanelBuilder().
		Title("Lease watch").
		Description("cascade_node_lease_watch_up: 1 while the lease watch is synced, error-free since its last success, and the API answers the probe.").
		Datasource(promDS()).
		WithTarget(prom(`max(cascade_node_lease_watch_up{`+clusterSel+`})`, "lease watch")).
		Mappings(valueText("0", "down", "red", "1", "up", "green")).
		Thresholds(thresholds("red", 1.0, "green")).
		ShowValue(common.VisibilityModeNever).
		Span(12).Height(4))
	b.WithPanel(series("Since the watch last heard from the API", "s", 12, 4).
		Description("Seconds since the last lease event or successful list (cascade_node_lease_watch_last_event_timestamp_seconds).").
		WithTarget(prom(`time() - max(cascade_node_lease_watch_last_event_timestamp_seconds{`+clusterSel+`})`, "since last event")).
		Min(0))
	b.WithPanel(series("Watch errors", "short", 12, 6).
		Description("Failed list, watch and probe calls of the lease exporter per second (cascade_node_lease_watch_errors_total).").
		WithTarget(prom(`sum by (resource) (rate(cascade_node_lease_watch_errors_total{`+clusterSel+`}[$__rate_interval]))`, "{{resource}}")).
		Min(0))
	return b.Build()
}
