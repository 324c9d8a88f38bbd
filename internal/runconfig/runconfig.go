// Package runconfig reads the configuration file of `cascade run`: a
// Prometheus configuration (global, scrape_configs, scrape_config_files,
// rule_files, alerting, remote_write, tracing), read by Prometheus's own
// loader so users write what they already know, plus one `cascade:` section
// for what Prometheus has no word for. Both are decoded strictly; errors
// name the file and the line. The Prometheus sections Cascade does not act
// on are refused, each with what to use instead: none is read and dropped.
package runconfig

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	promcommon "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Config is the whole configuration of `cascade run`.
type Config struct {
	// Prometheus holds the Prometheus sections, with Prometheus's defaults.
	Prometheus *promconfig.Config
	// Cascade holds the `cascade:` section.
	Cascade Cascade
}

// Cascade is the `cascade:` section.
type Cascade struct {
	Storage     Storage `yaml:"storage"`
	Loki        Loki    `yaml:"loki"`
	Query       Query   `yaml:"query"`
	ExternalURL string  `yaml:"external_url"`
}

// Query points the rule engine at a remote Prometheus-compatible query API
// (Prometheus, Mimir, Thanos, VictoriaMetrics) for the series it does not
// write itself; empty URL: everything is read from the embedded TSDB.
type Query struct {
	// URL is the API's base, without /api/v1/query.
	URL     string   `yaml:"url"`
	Timeout Duration `yaml:"timeout"`
	// HTTPClientConfig holds TLS, authentication, proxy and http_headers
	// (X-Scope-OrgID for Mimir), as in Prometheus's remote_write.
	HTTPClientConfig promcommon.HTTPClientConfig `yaml:",inline"`
}

// Storage configures the embedded TSDB and the incident state.
type Storage struct {
	// Path holds the TSDB, the remote-write WAL and the incident state;
	// relative paths are relative to the configuration file.
	Path      string   `yaml:"path"`
	Retention Duration `yaml:"retention"`
}

// Loki is where incident events are pushed (Loki push API).
type Loki struct {
	URL           string   `yaml:"url"`
	TenantID      string   `yaml:"tenant_id"`
	QueueCapacity int      `yaml:"queue_capacity"`
	Timeout       Duration `yaml:"timeout"`
}

// Duration is a Prometheus-style duration ("15s", "2d") whose decoding
// errors keep their line: yaml.v2 drops the line of errors returned by
// custom unmarshalers, so the value is decoded as a plain string first and
// parsed after, with the line looked up again.
type Duration string

// Value parses d; empty is zero.
func (d Duration) Value() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := model.ParseDuration(string(d))
	return time.Duration(v), err
}

// Default is the configuration `cascade run` uses without a file: the
// embedded rules, evaluated every 15 s over what it scrapes from its own
// exporters.
const Default = `global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs:
  - job_name: cascade-exporter
    static_configs:
      - targets: ["127.0.0.1:9847"]
cascade:
  storage:
    path: data
    retention: 1d
`

// Load reads and validates the file at path.
func Load(path string, logger *slog.Logger) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(b, filepath.Dir(path), logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a configuration; dir resolves relative paths.
func Parse(b []byte, dir string, logger *slog.Logger) (*Config, error) {
	promText, cascadeText, err := split(b)
	if err != nil {
		return nil, err
	}
	if err := refuseUnused(promText, cascadeText); err != nil {
		return nil, err
	}
	prom, err := promconfig.Load(string(promText), logger)
	if err != nil {
		return nil, err
	}
	if err := validateTracing(prom.TracingConfig, promText); err != nil {
		return nil, err
	}
	prom.SetDirectory(dir)

	var wrapper struct {
		Cascade Cascade `yaml:"cascade"`
	}
	wrapper.Cascade = defaultCascade()
	if err := yamlv2.UnmarshalStrict(cascadeText, &wrapper); err != nil {
		return nil, err
	}
	c := &Config{Prometheus: prom, Cascade: wrapper.Cascade}
	if c.Cascade.Storage.Path != "" && !filepath.IsAbs(c.Cascade.Storage.Path) {
		c.Cascade.Storage.Path = filepath.Join(dir, c.Cascade.Storage.Path)
	}
	c.Cascade.Query.HTTPClientConfig.SetDirectory(dir)
	if err := c.Cascade.Validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			if line := lineOf(cascadeText, fe.path...); line > 0 {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		return nil, err
	}
	return c, nil
}

// refused holds the sections of a Prometheus configuration that Prometheus's
// loader accepts and cascade run does not act on, each with what to do
// instead. Read and dropped, they would leave a user believing, say, that
// remote_read feeds the rules.
var refused = map[string]string{
	"storage":     "cascade run keeps its TSDB as cascade.storage says (path, retention); Prometheus's storage section (tsdb, exemplars) is not supported: move retention to cascade.storage.retention and remove the section",
	"remote_read": "cascade run does not read through remote_read: to have the rules read a remote Prometheus-compatible store, set cascade.query",
	"otlp":        "cascade run has no OTLP receiver, so the otlp section configures nothing: remove it",
	"runtime":     "cascade run does not act on runtime: set the GOGC environment variable instead",
}

// refuseUnused reports the first refused section of the file, and the
// cascade.tracing section of earlier versions, with their lines.
func refuseUnused(promText, cascadeText []byte) error {
	var doc yamlv3.Node
	if yamlv3.Unmarshal(promText, &doc) == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yamlv3.MappingNode {
		keys := doc.Content[0].Content
		for i := 0; i < len(keys); i += 2 {
			if why, ok := refused[keys[i].Value]; ok {
				return fmt.Errorf("line %d: %s: %s", keys[i].Line, keys[i].Value, why)
			}
		}
	}
	if line := keyLine(cascadeText, "cascade", "tracing"); line > 0 {
		return fmt.Errorf("line %d: cascade.tracing is replaced by Prometheus's own top-level tracing: section: "+
			"write `tracing: {client_type: http, endpoint: HOST:4318, insecure: true, sampling_fraction: 1}` "+
			"(its client_type defaults to grpc, port 4317, and its sampling_fraction to 0, which traces nothing)", line)
	}
	return nil
}

// validateTracing checks what Prometheus's loader does not: that the
// endpoint is host:port, which both of its OTLP clients need. Prometheus
// would take "collector" or "http://collector:4318" and fail every export.
func validateTracing(t promconfig.TracingConfig, promText []byte) error {
	if t.Endpoint == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(t.Endpoint)
	if err == nil {
		if n, perr := strconv.Atoi(port); host == "" || perr != nil || n <= 0 || n > 65535 {
			err = errors.New("bad host or port")
		}
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("tracing.endpoint %q: want host:port of an OTLP receiver (4317 for grpc, 4318 for http): %v", t.Endpoint, err)
	if line := lineOf(promText, "tracing", "endpoint"); line > 0 {
		err = fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// fieldError is a validation error of one field, named by its YAML path.
type fieldError struct {
	path []string
	msg  string
}

func (e *fieldError) Error() string { return strings.Join(e.path, ".") + " " + e.msg }

func badField(msg string, path ...string) error { return &fieldError{path: path, msg: msg} }

// lineOf finds the 1-based line of the value at path in b, 0 if absent.
func lineOf(b []byte, path ...string) int {
	if _, value := find(b, path...); value != nil {
		return value.Line
	}
	return 0
}

// keyLine finds the 1-based line of the key of path in b, 0 if absent.
func keyLine(b []byte, path ...string) int {
	if key, _ := find(b, path...); key != nil {
		return key.Line
	}
	return 0
}

// find returns the nodes of the last key of path in b and of its value.
func find(b []byte, path ...string) (key, value *yamlv3.Node) {
	var doc yamlv3.Node
	if yamlv3.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return nil, nil
	}
	value = doc.Content[0]
	for _, k := range path {
		if value.Kind != yamlv3.MappingNode {
			return nil, nil
		}
		var next *yamlv3.Node
		for i := 0; i+1 < len(value.Content); i += 2 {
			if value.Content[i].Value == k {
				key, next = value.Content[i], value.Content[i+1]
			}
		}
		if next == nil {
			return nil, nil
		}
		value = next
	}
	return key, value
}

func defaultCascade() Cascade {
	return Cascade{
		Storage: Storage{Path: "data", Retention: "1d"},
		Loki:    Loki{QueueCapacity: 10000, Timeout: "10s"},
		Query:   Query{Timeout: "30s", HTTPClientConfig: promcommon.DefaultHTTPClientConfig},
	}
}

// Validate reports the first invalid field of the cascade section.
func (c Cascade) Validate() error {
	if c.Storage.Path == "" {
		return badField("must not be empty", "cascade", "storage", "path")
	}
	retention, err := c.Storage.Retention.Value()
	if err != nil {
		return badField(err.Error(), "cascade", "storage", "retention")
	}
	if retention < time.Hour {
		return badField(fmt.Sprintf("%s is shorter than an hour, too short for baselines", c.Storage.Retention), "cascade", "storage", "retention")
	}
	if _, err := c.Loki.Timeout.Value(); err != nil {
		return badField(err.Error(), "cascade", "loki", "timeout")
	}
	if c.Loki.URL != "" {
		if u, err := url.Parse(c.Loki.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badField(fmt.Sprintf("%q: want http(s)://host[:port]/loki/api/v1/push", c.Loki.URL), "cascade", "loki", "url")
		}
		if c.Loki.QueueCapacity <= 0 {
			return badField(fmt.Sprintf("%d must be positive", c.Loki.QueueCapacity), "cascade", "loki", "queue_capacity")
		}
	}
	if err := c.Query.validate(); err != nil {
		return err
	}
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			return badField(fmt.Sprintf("%q: want an absolute URL", c.ExternalURL), "cascade", "external_url")
		}
	}
	return nil
}

func (q Query) validate() error {
	if d, err := q.Timeout.Value(); err != nil || d <= 0 {
		msg := fmt.Sprintf("%q must be a positive duration", q.Timeout)
		return badField(msg, "cascade", "query", "timeout")
	}
	if q.URL == "" {
		return nil
	}
	if u, err := url.Parse(q.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return badField(fmt.Sprintf("%q: want http(s)://host[:port][/path], the base of /api/v1/query", q.URL), "cascade", "query", "url")
	}
	if err := q.HTTPClientConfig.Validate(); err != nil {
		return badField(err.Error(), "cascade", "query")
	}
	return nil
}

// split returns two copies of the file: one with the `cascade:` section
// blanked out, for Prometheus's loader, and one with everything else
// blanked out. Blanking keeps every line where it was, so both decoders'
// errors point at the right line of the user's file.
func split(b []byte) (prom, cascade []byte, err error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(b, &doc); err != nil {
		return nil, nil, err
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	first, last := -1, -1 // 0-based line range of the cascade section
	if len(doc.Content) == 1 && doc.Content[0].Kind == yamlv3.MappingNode {
		keys := doc.Content[0].Content
		for i := 0; i < len(keys); i += 2 {
			if keys[i].Value != "cascade" {
				continue
			}
			first, last = keys[i].Line-1, len(lines)-1
			if i+2 < len(keys) {
				last = keys[i+2].Line - 2
			}
		}
	}
	var p, c bytes.Buffer
	for i, line := range lines {
		blank := []byte("\n")
		if !bytes.HasSuffix(line, blank) {
			blank = nil
		}
		if i >= first && i <= last {
			p.Write(blank)
			c.Write(line)
		} else {
			p.Write(line)
			c.Write(blank)
		}
	}
	return p.Bytes(), c.Bytes(), nil
}
