package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
)

// gatewayLogSelector selects the access log lines the gateway exporter
// forwards to Loki (streams labelled cluster, gateway, route, code_class).
const gatewayLogSelector = `{cluster="$cluster", route=~".+"}`

func gateway() (dashboard.Dashboard, error) {
	b := newDashboard(GatewayUID, "Cascade gateway",
		"The API gateway in front of the control plane, from its access log: requests by route, status and client class against the recent baseline, latency, upstream timeouts, the tailer's health and the lines themselves.",
		"cascade_gateway_log_lines_total")
	b.WithPanel(series("Requests by client class against baseline", "reqps", 24, 8).
		Description("Requests per second by client class (kubelet, controller, kubectl, other); the total of the last minute (cascade:gateway_requests:rate1m) and its median over the last hour (cascade:gateway_requests:rate1m_baseline1h, dashed). GatewayRequestSurge fires at 3 times the baseline.").
		WithTarget(prom(requestsByClient, "{{client}}")).
		WithTarget(prom(`cascade:gateway_requests:rate1m{`+clusterSel+`}`, "total")).
		WithTarget(prom(requestsBaseline, "baseline")).
		OverrideByName("total", overrideProps("custom.lineWidth", 2, "custom.fillOpacity", 0)).
		OverrideByName("baseline", append(dashed(), color("text"))))
	b.WithPanel(series("Requests by route (top 10)", "reqps", 12, 8).
		WithTarget(prom(`topk(10, sum by (route) (rate(cascade_gateway_requests_total{`+clusterSel+`}[$__rate_interval])))`, "{{route}}")))
	b.WithPanel(series("Requests by status code", "reqps", 12, 8).
		Description("code 0: no response was sent (the client went away).").
		WithTarget(prom(`sum by (code) (rate(cascade_gateway_requests_total{`+clusterSel+`}[$__rate_interval]))`, "{{code}}")).
		OverrideByRegexp("^5", []dashboard.DynamicConfigValue{color("red")}))
	b.WithPanel(series("Latency percentiles", "s", 12, 8).
		Description("From cascade_gateway_request_duration_seconds (watches included: long requests by design).").
		WithTarget(prom(`histogram_quantile(0.5, sum by (le) (rate(cascade_gateway_request_duration_seconds_bucket{`+clusterSel+`}[$__rate_interval])))`, "p50")).
		WithTarget(prom(`histogram_quantile(0.9, sum by (le) (rate(cascade_gateway_request_duration_seconds_bucket{`+clusterSel+`}[$__rate_interval])))`, "p90")).
		WithTarget(prom(`histogram_quantile(0.99, sum by (le) (rate(cascade_gateway_request_duration_seconds_bucket{`+clusterSel+`}[$__rate_interval])))`, "p99")))
	b.WithPanel(series("Upstream timeouts by route and client", "reqps", 12, 8).
		Description("cascade_gateway_timeouts_total: a 504, an Envoy UT/UMSDR flag, or a non-watch request slower than the exporter's timeout threshold.").
		WithTarget(prom(`sum by (route, client) (rate(cascade_gateway_timeouts_total{`+clusterSel+`}[$__rate_interval])) > 0`, "{{client}} {{route}}")))
	b.WithPanel(series("Kubelet requests failing", "percentunit", 12, 7).
		Description("Share of kubelet requests answered 5xx or not at all, and timing out: the gateway symptom holds at 10 % and 1/s.").
		WithTarget(prom(`cascade:gateway_kubelet_errors:rate1m{`+clusterSel+`} / on (region, cluster) (cascade:gateway_kubelet_requests:rate1m{`+clusterSel+`} > 0)`, "errors")).
		WithTarget(prom(`cascade:gateway_kubelet_timeouts:rate1m{`+clusterSel+`} / on (region, cluster) (cascade:gateway_kubelet_requests:rate1m{`+clusterSel+`} > 0)`, "timeouts")).
		Thresholds(thresholds("green", 0.1, "red")).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Min(0))
	b.WithPanel(series("Access log lines", "short", 12, 7).
		Description("Lines per second parsed and malformed (too long, invalid UTF-8, unparsable), from cascade_gateway_log_lines_total.").
		WithTarget(prom(`sum by (result) (rate(cascade_gateway_log_lines_total{`+clusterSel+`}[$__rate_interval]))`, "{{result}}")).
		OverrideByName("malformed", []dashboard.DynamicConfigValue{color("red")}))
	b.WithPanel(logs.NewPanelBuilder().
		Title("Access log lines").
		Description("The lines the gateway exporter forwards to Loki (--gateway.loki.url), by route and status class.").
		Datasource(lokiDS()).
		WithTarget(logQuery(gatewayLogSelector)).
		ShowTime(true).
		SortOrder(common.LogsSortOrderDescending).
		Span(24).Height(10))
	return b.Build()
}
