package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseLogSpec(t *testing.T) {
	spec, err := ParseLogSpec("nginx-json:/var/log/nginx/access.log")
	require.NoError(t, err)
	require.Equal(t, LogSpec{Format: FormatNginxJSON, Path: "/var/log/nginx/access.log"}, spec)
	require.Equal(t, "nginx-json:/var/log/nginx/access.log", spec.String())
	spec, err = ParseLogSpec("envoy-json:/var/log/envoy/a:b.log")
	require.NoError(t, err)
	require.Equal(t, "/var/log/envoy/a:b.log", spec.Path, "only the first colon separates")

	for in, msg := range map[string]string{
		"/var/log/nginx/access.log":      `want FORMAT:PATH`,
		"nginx-json:":                    `want FORMAT:PATH`,
		"apache:/var/log/access.log":     `unknown format "apache", want one of nginx-json, envoy-json, combined`,
		"combined:relative/access.log":   `path "relative/access.log" must be absolute`,
		"NGINX-JSON:/var/log/access.log": `unknown format "NGINX-JSON"`,
	} {
		_, err := ParseLogSpec(in)
		require.ErrorContains(t, err, msg, "%q", in)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Logs = []LogSpec{{Format: FormatCombined, Path: "/var/log/nginx/access.log"}}
		return c
	}
	require.NoError(t, valid().Validate())
	withLoki := valid()
	withLoki.Loki.URL = "http://loki:3100/loki/api/v1/push"
	require.NoError(t, withLoki.Validate())

	for _, tc := range []struct {
		mutate func(*Config)
		err    string
	}{
		{func(c *Config) { c.Logs = nil }, "no log to follow"},
		{func(c *Config) { c.Logs = append(c.Logs, c.Logs[0]) }, `log path "/var/log/nginx/access.log" given twice`},
		{func(c *Config) { c.Logs[0].Format = "json" }, `unknown format "json"`},
		{func(c *Config) { c.PositionsFile = "positions.json" }, `positions file "positions.json" must be an absolute path`},
		{func(c *Config) { c.PositionsFile = "/var/log/nginx/access.log" }, "is also a log"},
		{func(c *Config) { c.PositionsInterval = 0 }, "positions interval 0s must be positive"},
		{func(c *Config) { c.PollInterval = -time.Second }, "poll interval -1s must be positive"},
		{func(c *Config) { c.MaxLineBytes = 10 }, "max line bytes 10 must be between 256 and"},
		{func(c *Config) { c.MaxLineBytes = 1 << 30 }, "max line bytes 1073741824"},
		{func(c *Config) { c.RotationGrace = -1 }, "rotation grace -1ns must not be negative"},
		{func(c *Config) { c.TimeoutThreshold = -time.Second }, "timeout threshold -1s"},
		{func(c *Config) { c.MaxRoutes = 0 }, "max routes 0 must be at least 1"},
		{func(c *Config) { c.Cluster = "\xff" }, "cluster name"},
		{func(c *Config) { c.Loki.URL = "loki:3100" }, `loki: URL "loki:3100"`},
		{func(c *Config) { c.Loki.URL = "http://loki/push"; c.Loki.QueueCapacity = 0 }, "queue capacity 0"},
	} {
		c := valid()
		tc.mutate(&c)
		err := c.Validate()
		require.ErrorContains(t, err, tc.err)
		_, err = New(c, discardLogger())
		require.ErrorContains(t, err, tc.err, "New validates")
	}
}

func TestRunTwice(t *testing.T) {
	env := newTailEnv(t)
	e := env.exporter(t)
	runExporter(t, e)
	waitFor(t, 5*time.Second, "Run to start", e.running.Load)
	require.ErrorContains(t, e.Run(t.Context()), "Run called twice")
}
