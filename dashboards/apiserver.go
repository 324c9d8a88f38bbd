package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
)

func apiserver() (dashboard.Dashboard, error) {
	b := newDashboard(APIServerUID, "Cascade API server memory",
		"Each API server replica: working set against its limit, the predicted share of the limit in 10 minutes, OOM kills, restarts and reachability.",
		"cascade_apiserver_up")
	b.WithPanel(series("Working set against limit, per replica", "bytes", 24, 8).
		Description("cascade_apiserver_memory_working_set_bytes against cascade_apiserver_memory_limit_bytes (dashed).").
		WithTarget(prom(workingSetByReplica, "working set {{replica}}")).
		WithTarget(prom(limitByReplica, "limit {{replica}}")).
		OverrideByRegexp("^limit ", dashed()))
	b.WithPanel(series("Share of the limit, now and predicted in 10 minutes", "percentunit", 12, 8).
		Description("cascade:apiserver_memory_utilisation:ratio and its linear prediction 10 minutes ahead from the last 5 minutes (cascade:apiserver_memory_utilisation:predicted10m, dashed). APIServerMemoryPressure fires at 90 % for 5 minutes; APIServerMemoryExhaustionPredicted when the prediction reaches 100 %.").
		WithTarget(prom(`cascade:apiserver_memory_utilisation:ratio{`+clusterSel+`}`, "now {{replica}}")).
		WithTarget(prom(`cascade:apiserver_memory_utilisation:predicted10m{`+clusterSel+`}`, "in 10 min {{replica}}")).
		OverrideByRegexp("^in 10 min ", dashed()).
		Thresholds(thresholds("green", 0.9, "red")).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Min(0))
	b.WithPanel(series("OOM kills and restarts", "short", 12, 8).
		Description("Increase of cascade_apiserver_oom_kills_total and cascade_apiserver_restarts_total per replica.").
		WithTarget(prom(`max by (replica) (increase(cascade_apiserver_oom_kills_total{`+clusterSel+`}[$__rate_interval]))`, "OOM kills {{replica}}")).
		WithTarget(prom(`max by (replica) (increase(cascade_apiserver_restarts_total{`+clusterSel+`}[$__rate_interval]))`, "restarts {{replica}}")).
		DrawStyle(common.GraphDrawStyleBars).
		OverrideByRegexp("^OOM kills ", []dashboard.DynamicConfigValue{color("red")}))
	b.WithPanel(statetimeline.NewPanelBuilder().
		Title("Replica reachability").
		Description("cascade_apiserver_up: 1 when the last probe of the replica succeeded.").
		Datasource(promDS()).
		WithTarget(prom(`max by (replica) (cascade_apiserver_up{`+clusterSel+`})`, "{{replica}}")).
		Mappings(valueText("0", "down", "red", "1", "up", "green")).
		Thresholds(thresholds("red", 1.0, "green")).
		ShowValue(common.VisibilityModeNever).
		Span(12).Height(6))
	b.WithPanel(series("Replicas answering", "short", 12, 6).
		Description("cascade:apiserver_replicas_up:sum of cascade:apiserver_replicas:count.").
		WithTarget(prom(`cascade:apiserver_replicas_up:sum{`+clusterSel+`}`, "up")).
		WithTarget(prom(`cascade:apiserver_replicas:count{`+clusterSel+`}`, "replicas")).
		OverrideByName("replicas", dashed()).
		Min(0))
	return b.Build()
}
