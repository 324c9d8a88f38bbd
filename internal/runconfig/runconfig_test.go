package runconfig

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

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
  tracing:
    endpoint: otel:4318
  external_url: https://cascade.example.com
rule_files: [rules/*.yml]
alerting:
  alertmanagers:
    - static_configs: [{targets: ["am:9093"]}]
`), "/etc/cascade", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, "/var/lib/cascade", c.Cascade.Storage.Path)
	require.Equal(t, "otel:4318", c.Cascade.Tracing.Endpoint)
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
