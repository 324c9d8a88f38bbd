package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
)

// selfSel selects the series of `cascade run` itself. Its /metrics is
// scraped by its own collector (or by your Prometheus); the instance
// variable picks one process.
const selfSel = `instance=~"$instance"`

func self() (dashboard.Dashboard, error) {
	b := newDashboard(SelfUID, "Cascade itself",
		"The health of Cascade: scrapes, rule evaluation, alert notifications to Alertmanager, incident events to Loki, configuration reloads.",
		"cascade_apiserver_up").
		WithVariable(dashboard.NewQueryVariableBuilder("instance").
			Label("cascade run").
			Datasource(promDS()).
			Query(dashboard.StringOrMap{String: ptr("label_values(cascade_config_last_reload_successful, instance)")}).
			Definition("label_values(cascade_config_last_reload_successful, instance)").
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			IncludeAll(true).AllValue(".*").
			Sort(dashboard.VariableSortAlphabeticalAsc))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Last configuration reload").
		Datasource(promDS()).
		WithTarget(promInstant(`min(cascade_config_last_reload_successful{`+selfSel+`})`, "")).
		Mappings(valueText("0", "failed", "red", "1", "ok", "green")).
		Thresholds(thresholds("red", 1.0, "green")).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		Span(6).Height(4))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Series in the embedded TSDB").
		Datasource(promDS()).
		WithTarget(promInstant(`sum(prometheus_tsdb_head_series{`+selfSel+`})`, "")).
		GraphMode(common.BigValueGraphModeArea).
		Span(6).Height(4))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Rule evaluation failures").
		Datasource(promDS()).
		WithTarget(promInstant(`sum(increase(prometheus_rule_evaluation_failures_total{`+selfSel+`}[$__range]))`, "")).
		Decimals(0).
		Thresholds(thresholds("green", 1.0, "red")).
		ColorMode(common.BigValueColorModeBackground).
		Span(6).Height(4))
	b.WithPanel(stat.NewPanelBuilder().
		Title("Entries dropped (notifications, Loki)").
		Datasource(promDS()).
		WithTarget(promInstant(`sum(increase(prometheus_notifications_dropped_total{`+selfSel+`}[$__range])) + sum(increase(cascade_loki_entries_dropped_total{`+selfSel+`}[$__range]))`, "")).
		Decimals(0).
		Thresholds(thresholds("green", 1.0, "red")).
		ColorMode(common.BigValueColorModeBackground).
		Span(6).Height(4))
	b.WithPanel(series("Scrape duration by target", "s", 12, 8).
		Description("How long each scrape of the collector took (scrape_duration_seconds, written by the scrape loop), and each exporter's share (cascade_exporter_scrape_duration_seconds).").
		WithTarget(prom(`max by (job, instance) (scrape_duration_seconds{`+clusterSel+`})`, "{{job}} {{instance}}")).
		WithTarget(prom(`max by (exporter) (cascade_exporter_scrape_duration_seconds{`+clusterSel+`})`, "exporter {{exporter}}")))
	b.WithPanel(series("Scrape targets down", "short", 12, 8).
		Description("Targets whose last scrape failed (up == 0), by job.").
		WithTarget(prom(`count by (job) (up{`+clusterSel+`} == 0) or sum by (job) (up{`+clusterSel+`} * 0)`, "{{job}}")).
		Min(0))
	b.WithPanel(series("Rule group evaluation duration", "s", 12, 8).
		Description("Duration of the last evaluation of each rule group against its interval (dashed).").
		WithTarget(prom(`max by (rule_group) (prometheus_rule_group_last_duration_seconds{`+selfSel+`})`, "{{rule_group}}")).
		WithTarget(prom(`max by (rule_group) (prometheus_rule_group_interval_seconds{`+selfSel+`})`, "interval {{rule_group}}")).
		OverrideByRegexp("^interval ", dashed()))
	b.WithPanel(series("Rule evaluations, failures and missed iterations", "ops", 12, 8).
		WithTarget(prom(`sum(rate(prometheus_rule_evaluations_total{`+selfSel+`}[$__rate_interval]))`, "evaluations")).
		WithTarget(prom(`sum(rate(prometheus_rule_evaluation_failures_total{`+selfSel+`}[$__rate_interval]))`, "failures")).
		WithTarget(prom(`sum(rate(prometheus_rule_group_iterations_missed_total{`+selfSel+`}[$__rate_interval]))`, "missed iterations")).
		OverrideByName("failures", []dashboard.DynamicConfigValue{color("red")}).
		OverrideByName("missed iterations", []dashboard.DynamicConfigValue{color("orange")}))
	b.WithPanel(series("Alertmanager notifications", "short", 12, 8).
		Description("Queue in front of Alertmanager against its capacity (dashed), and alerts sent, failed and dropped per second.").
		WithTarget(prom(`sum(prometheus_notifications_queue_length{`+selfSel+`})`, "queued")).
		WithTarget(prom(`sum(prometheus_notifications_queue_capacity{`+selfSel+`})`, "capacity")).
		WithTarget(prom(`sum(rate(prometheus_notifications_sent_total{`+selfSel+`}[$__rate_interval]))`, "sent/s")).
		WithTarget(prom(`sum(rate(prometheus_notifications_errors_total{`+selfSel+`}[$__rate_interval]))`, "errors/s")).
		WithTarget(prom(`sum(rate(prometheus_notifications_dropped_total{`+selfSel+`}[$__rate_interval]))`, "dropped/s")).
		OverrideByName("capacity", dashed()).
		OverrideByRegexp("^(errors|dropped)", []dashboard.DynamicConfigValue{color("red")}))
	b.WithPanel(series("Loki senders", "short", 12, 8).
		Description("The non-blocking Loki senders (incident events, forwarded gateway lines): queue length and entries dropped per second by reason.").
		WithTarget(prom(`sum by (component) (cascade_loki_queue_length{`+selfSel+`})`, "queued {{component}}")).
		WithTarget(prom(`sum by (component, reason) (rate(cascade_loki_entries_dropped_total{`+selfSel+`}[$__rate_interval]))`, "dropped/s {{component}} {{reason}}")).
		WithTarget(prom(`sum by (component) (rate(cascade_loki_entries_sent_total{`+selfSel+`}[$__rate_interval]))`, "sent/s {{component}}")).
		OverrideByRegexp("^dropped", []dashboard.DynamicConfigValue{color("red")}))
	return b.Build()
}
