package runconfig

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

func TestParseDefault(t *testing.T) {
	c, err := Parse([]byte(Default), "/etc/cascade", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, "/etc/cascade/data", c.Cascade.Storage.Path)
	retention, err := c.Cascade.Storage.Retention.Value()
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, retention)
	require.Len(t, c.Prometheus.ScrapeConfigs, 1)
	require.Equal(t, 15*time.Second, time.Duration(c.Prometheus.GlobalConfig.EvaluationInterval))
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`# a comment
global:
  evaluation_interval: 10s
  external_labels: {cluster: prod-eu-1}
cascade:
  # section comment
  storage:
    path: /var/lib/cascade
    retention: 2d
  loki:
    url: http://loki:3100/loki/api/v1/push
  external_url: https://cascade.example.com
tracing:
  client_type: http
  endpoint: otel:4318
  sampling_fraction: 1
rule_files: [rules/*.yml]
alerting:
  alertmanagers:
    - static_configs: [{targets: ["am:9093"]}]
`), "/etc/cascade", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, "/var/lib/cascade", c.Cascade.Storage.Path)
	require.Equal(t, "otel:4318", c.Prometheus.TracingConfig.Endpoint)
	require.Equal(t, []string{"/etc/cascade/rules/*.yml"}, c.Prometheus.RuleFiles, "relative to the file, like Prometheus")
	require.Len(t, c.Prometheus.AlertingConfig.AlertmanagerConfigs, 1)
	require.Equal(t, "prod-eu-1", c.Prometheus.GlobalConfig.ExternalLabels.Get("cluster"))
}

// TestErrorsNameTheLine: whichever section is wrong, the error points at the
// line of the user's file.
func TestErrorsNameTheLine(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"unknown prometheus field": {"global:\n  scrape_interval: 15s\ncascade:\n  storage: {path: d}\nscrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n", "line 7"},
		"unknown cascade field":    {"global:\n  scrape_interval: 15s\ncascade:\n  storage:\n    path: d\n    retension: 2d\n", "line 6"},
		"bad cascade value":        {"cascade:\n  storage:\n    retention: soon\n", "line 3"},
		"short retention":          {"cascade:\n  storage:\n    retention: 10m\n", "shorter than an hour"},
		"bad loki url":             {"cascade:\n  loki:\n    url: loki:3100\n", `line 3: cascade.loki.url "loki:3100"`},
		"not yaml":                 {"global: [\n", "line"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "/", slog.New(slog.DiscardHandler))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cascade.yml")
	require.NoError(t, os.WriteFile(path, []byte("cascade:\n  nope: 1\n"), 0o644))
	_, err := Load(path, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, path+": ")
	require.ErrorContains(t, err, "line 2")
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Default))
	f.Add([]byte("cascade:\n  storage: {path: x}\nglobal: {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "/", slog.New(slog.DiscardHandler))
		if err == nil && c.Prometheus == nil {
			t.Fatal("no error and no config")
		}
	})
}

// TestQuerySection: the remote query API is configured like any Prometheus
// HTTP client (headers, TLS, auth), with file paths relative to the file.
func TestQuerySection(t *testing.T) {
	c, err := Parse([]byte(`cascade:
  query:
    url: https://mimir.example.com/prometheus
    timeout: 20s
    http_headers:
      X-Scope-OrgID: {values: [tenant-1]}
    basic_auth: {username: cascade, password_file: secrets/mimir}
    tls_config: {ca_file: ca.pem}
`), "/etc/cascade", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	q := c.Cascade.Query
	require.Equal(t, "https://mimir.example.com/prometheus", q.URL)
	d, err := q.Timeout.Value()
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, d)
	require.Equal(t, []string{"tenant-1"}, q.HTTPClientConfig.HTTPHeaders.Headers["X-Scope-OrgID"].Values)
	require.Equal(t, "/etc/cascade/secrets/mimir", q.HTTPClientConfig.BasicAuth.PasswordFile)
	require.Equal(t, "/etc/cascade/ca.pem", q.HTTPClientConfig.TLSConfig.CAFile)
	require.True(t, q.HTTPClientConfig.FollowRedirects, "Prometheus's client defaults")

	c, err = Parse([]byte(Default), "/", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Empty(t, c.Cascade.Query.URL, "the default reads the embedded TSDB")
}

func TestQueryErrorsNameTheLine(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"unknown field":   {"cascade:\n  query:\n    url: http://p:9090\n    tiemout: 5s\n", "line 4"},
		"bad url":         {"cascade:\n  query:\n    url: prometheus:9090\n", `line 3: cascade.query.url "prometheus:9090"`},
		"bad timeout":     {"cascade:\n  query:\n    url: http://p:9090\n    timeout: soon\n", "line 4: cascade.query.timeout"},
		"zero timeout":    {"cascade:\n  query:\n    url: http://p:9090\n    timeout: 0s\n", "line 4: cascade.query.timeout"},
		"two auth kinds":  {"cascade:\n  query:\n    url: http://p:9090\n    basic_auth: {username: a, password: b}\n    bearer_token: c\n", "line 3: cascade.query"},
		"reserved header": {"cascade:\n  query:\n    url: http://p:9090\n    http_headers: {Authorization: {values: [x]}}\n", "Authorization"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "/", slog.New(slog.DiscardHandler))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// actedOn names, for each section of a Prometheus configuration that
// cascade run accepts, the part of it that acts on the section, and an
// example of the section.
var actedOn = map[string]struct{ by, example string }{
	"global":              {"collector (scrape settings), engine (evaluation, rule query offset, query log), notifier and remote write (external labels)", "global: {evaluation_interval: 30s}\n"},
	"alerting":            {"engine: Prometheus's notifier and Alertmanager discovery", "alerting: {alertmanagers: [{static_configs: [{targets: [am:9093]}]}]}\n"},
	"rule_files":          {"engine", "rule_files: [rules.yml]\n"},
	"scrape_config_files": {"collector", "scrape_config_files: [scrape/*.yml]\n"},
	"scrape_configs":      {"collector", "scrape_configs: [{job_name: a, static_configs: [{targets: [a:1]}]}]\n"},
	"remote_write":        {"collector", "remote_write: [{url: http://p:9090/api/v1/write}]\n"},
	"tracing":             {"Prometheus's tracing manager, in cascade run", "tracing: {client_type: http, endpoint: otel:4318}\n"},
}

// refusedExamples holds an example of each refused section and a word of
// what to use instead that its error must carry.
var refusedExamples = map[string]struct{ example, instead string }{
	"storage":     {"storage:\n  tsdb: {out_of_order_time_window: 10m}\n", "cascade.storage"},
	"remote_read": {"remote_read:\n  - url: http://p:9090/api/v1/read\n", "cascade.query"},
	"otlp":        {"otlp:\n  promote_resource_attributes: [service.name]\n", "remove it"},
	"runtime":     {"runtime:\n  gogc: 50\n", "GOGC"},
}

// yamlKeys lists the YAML keys of a struct's fields.
func yamlKeys(v any) []string {
	var keys []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// TestEverySectionIsActedOnOrRefused goes over every section of
// Prometheus's configuration, as its loader knows them: each is acted on by
// a part of cascade run, or refused with an error that names the section,
// its line, and what to use instead. A section added by a Prometheus upgrade
// fails here until it is sorted.
func TestEverySectionIsActedOnOrRefused(t *testing.T) {
	for _, key := range yamlKeys(promconfig.Config{}) {
		t.Run(key, func(t *testing.T) {
			acted, isActed := actedOn[key]
			ex, isRefused := refusedExamples[key]
			_, refusedInCode := refused[key]
			require.True(t, isActed != isRefused, "section %q must be either acted on or refused", key)
			require.Equal(t, isRefused, refusedInCode)
			text := "cascade:\n  storage: {path: d}\n"
			if isActed {
				_, err := Parse([]byte(text+acted.example), "/", slog.New(slog.DiscardHandler))
				require.NoError(t, err, "acted on by %s", acted.by)
				return
			}
			_, err := Parse([]byte(text+ex.example), "/", slog.New(slog.DiscardHandler))
			require.ErrorContains(t, err, "line 3: "+key+": ")
			require.ErrorContains(t, err, ex.instead)
		})
	}
}

// TestEveryGlobalSettingIsActedOn: the global section's settings are all
// used by a part of cascade run; a new one fails here until it is sorted.
func TestEveryGlobalSettingIsActedOn(t *testing.T) {
	by := map[string]string{
		"scrape_interval": "collector", "scrape_timeout": "collector", "scrape_protocols": "collector",
		"evaluation_interval": "engine", "rule_query_offset": "engine", "query_log_file": "engine",
		"scrape_failure_log_file": "collector", "external_labels": "engine, notifier, remote write",
		"body_size_limit": "collector", "sample_limit": "collector", "target_limit": "collector",
		"label_limit": "collector", "label_name_length_limit": "collector", "label_value_length_limit": "collector",
		"keep_dropped_targets": "collector", "metric_name_validation_scheme": "collector, engine, notifier",
		"metric_name_escaping_scheme": "collector", "scrape_native_histograms": "collector",
		"convert_classic_histograms_to_nhcb": "collector", "always_scrape_classic_histograms": "collector",
		"extra_scrape_metrics": "collector",
	}
	for _, key := range yamlKeys(promconfig.GlobalConfig{}) {
		require.Contains(t, by, key, "global.%s: which part of cascade run acts on it?", key)
	}
}

// TestCascadeTracingIsReplaced: the cascade.tracing section of earlier
// versions is refused with the Prometheus section that replaces it, not
// silently dropped.
func TestCascadeTracingIsReplaced(t *testing.T) {
	_, err := Parse([]byte("cascade:\n  storage: {path: d}\n  tracing:\n    endpoint: otel:4318\n    insecure: true\n"), "/", slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "line 3: cascade.tracing is replaced by Prometheus's own top-level tracing: section")
	require.ErrorContains(t, err, "client_type: http")
	require.ErrorContains(t, err, "sampling_fraction: 1")
}

func TestTracingEndpointMustBeHostPort(t *testing.T) {
	for _, ok := range []string{"collector:4318", "127.0.0.1:4318", "[::1]:4317"} {
		_, err := Parse([]byte("tracing:\n  endpoint: \""+ok+"\"\n"), "/", slog.New(slog.DiscardHandler))
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"collector", ":4318", "collector:0", "collector:http", "http://collector:4318"} {
		_, err := Parse([]byte("global: {}\ntracing:\n  client_type: http\n  endpoint: \""+bad+"\"\n"), "/", slog.New(slog.DiscardHandler))
		require.ErrorContains(t, err, "line 4: tracing.endpoint", bad)
		require.ErrorContains(t, err, "want host:port", bad)
	}
}
