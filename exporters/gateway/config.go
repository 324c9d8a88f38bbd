package gateway

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/internal/loki"
	"github.com/cascade-sre/cascade/internal/tail"
)

// Format is an access log format the exporter reads.
type Format string

// The formats, as written before the colon of a log spec.
const (
	// FormatNginxJSON is nginx's access log written with NginxJSONLogFormat.
	FormatNginxJSON Format = "nginx-json"
	// FormatEnvoyJSON is Envoy's file access log with a json_format holding
	// the keys of EnvoyJSONFormat.
	FormatEnvoyJSON Format = "envoy-json"
	// FormatCombined is the combined log format of nginx and Apache,
	// optionally followed by the request time in seconds.
	FormatCombined Format = "combined"
)

// Formats lists every format, for flag help.
var Formats = []Format{FormatNginxJSON, FormatEnvoyJSON, FormatCombined}

// Defaults, exported so the command can show them in its flag help.
const (
	DefaultPollInterval      = 250 * time.Millisecond
	DefaultPositionsInterval = 5 * time.Second
	DefaultMaxLineBytes      = 64 << 10
	DefaultRotationGrace     = 5 * time.Second
	DefaultMaxRoutes         = 1000
)

// LogSpec is one access log to follow.
type LogSpec struct {
	Format Format
	Path   string
}

// String is the spec as ParseLogSpec reads it.
func (s LogSpec) String() string { return string(s.Format) + ":" + s.Path }

// ParseLogSpec reads a flag value "FORMAT:PATH", such as
// nginx-json:/var/log/nginx/access.log.
func ParseLogSpec(s string) (LogSpec, error) {
	format, path, ok := strings.Cut(s, ":")
	if !ok || path == "" {
		return LogSpec{}, fmt.Errorf("log %q: want FORMAT:PATH with FORMAT one of %s", s, formatList())
	}
	spec := LogSpec{Format: Format(format), Path: path}
	if err := spec.validate(); err != nil {
		return LogSpec{}, err
	}
	return spec, nil
}

func (s LogSpec) validate() error {
	if !s.Format.valid() {
		return fmt.Errorf("log %q: unknown format %q, want one of %s", s.String(), s.Format, formatList())
	}
	if !filepath.IsAbs(s.Path) {
		return fmt.Errorf("log %q: path %q must be absolute", s.String(), s.Path)
	}
	return nil
}

func (f Format) valid() bool {
	for _, known := range Formats {
		if f == known {
			return true
		}
	}
	return false
}

func formatList() string {
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

// Config configures the gateway exporter. Start from DefaultConfig.
type Config struct {
	// Logs are the access logs to follow, each by its path (like tail -F).
	Logs []LogSpec
	// Config says how the logs are followed: positions, polling, the line
	// limit, rotation.
	tail.Config
	// TimeoutThreshold, when positive, counts a request that is not a watch
	// and took at least this long as a timeout, whatever its status. Set it
	// to the gateway's upstream read timeout to catch requests it cut after
	// the upstream had already sent its headers.
	TimeoutThreshold time.Duration
	// MaxRoutes caps the distinct route label values; routes beyond it are
	// counted as "other" (and in cascade_gateway_routes_over_limit_total).
	MaxRoutes int

	// Cluster and Gateway name the stream of forwarded lines in Loki
	// (labels cluster and gateway); empty ones are left out. The metrics do
	// not carry them: that is the job of Prometheus target labels.
	Cluster string
	Gateway string
	// Loki forwards every parsed line when Loki.URL is set.
	Loki loki.Config
}

// DefaultConfig returns the defaults the command's flags start from.
func DefaultConfig() Config {
	lc := loki.DefaultConfig()
	lc.Component = "gateway"
	return Config{
		Config: tail.Config{
			PositionsInterval: DefaultPositionsInterval,
			PollInterval:      DefaultPollInterval,
			MaxLineBytes:      DefaultMaxLineBytes,
			RotationGrace:     DefaultRotationGrace,
		},
		MaxRoutes: DefaultMaxRoutes,
		Loki:      lc,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.Logs) == 0 {
		return errors.New("gateway: no log to follow (give at least one FORMAT:PATH)")
	}
	seen := make(map[string]bool, len(c.Logs))
	for _, l := range c.Logs {
		if err := l.validate(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		p := filepath.Clean(l.Path)
		if seen[p] {
			return fmt.Errorf("gateway: log path %q given twice", l.Path)
		}
		seen[p] = true
	}
	if err := c.Config.Validate(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if c.PositionsFile != "" && seen[filepath.Clean(c.PositionsFile)] {
		return fmt.Errorf("gateway: positions file %q is also a log", c.PositionsFile)
	}
	switch {
	case c.TimeoutThreshold < 0:
		return fmt.Errorf("gateway: timeout threshold %s must not be negative", c.TimeoutThreshold)
	case c.MaxRoutes < 1:
		return fmt.Errorf("gateway: max routes %d must be at least 1", c.MaxRoutes)
	}
	for name, v := range map[string]string{"cluster": c.Cluster, "gateway": c.Gateway} {
		if !model.LabelValue(v).IsValid() {
			return fmt.Errorf("gateway: %s name %q is not valid UTF-8", name, v)
		}
	}
	if c.Loki.URL != "" {
		if err := c.Loki.Validate(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	return nil
}
