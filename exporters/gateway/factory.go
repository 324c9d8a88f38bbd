package gateway

import (
	"errors"
	"strconv"

	"github.com/cascade-sre/cascade/exporters"
)

// Factory registers the gateway access log exporter and its flags.
var Factory = exporters.Factory{
	Name:  "gateway",
	Help:  "Enable the gateway access log exporter (cascade_gateway_*); needs at least one --gateway.log.",
	Flags: flags,
}

func flags(app exporters.FlagSet) exporters.Config {
	c := &flagConfig{Config: DefaultConfig()}
	app.Flag("gateway.log", "Access log to follow, as FORMAT:PATH with FORMAT one of nginx-json, envoy-json, combined. Repeatable.").StringsVar(&c.logs)
	app.Flag("gateway.positions-file", "Where read positions are kept, so a restart neither loses nor double-counts lines. Empty: none, each start begins at the end of the logs.").StringVar(&c.PositionsFile)
	app.Flag("gateway.positions-interval", "How often positions are written; they are also written on shutdown.").Default(c.PositionsInterval.String()).DurationVar(&c.PositionsInterval)
	app.Flag("gateway.poll-interval", "How often the logs are checked for new lines and rotation.").Default(c.PollInterval.String()).DurationVar(&c.PollInterval)
	app.Flag("gateway.from-beginning", "Read a log with no saved position from its start instead of its end.").BoolVar(&c.FromBeginning)
	app.Flag("gateway.max-line-bytes", "Longer lines are counted malformed and skipped.").Default(strconv.Itoa(c.MaxLineBytes)).IntVar(&c.MaxLineBytes)
	app.Flag("gateway.rotation-grace", "How long a rotated-away file is still read after it stops growing.").Default(c.RotationGrace.String()).DurationVar(&c.RotationGrace)
	app.Flag("gateway.timeout-threshold", "Count a non-watch request at least this slow as a timeout; set it to the gateway's upstream read timeout. 0 turns it off.").Default("0s").DurationVar(&c.TimeoutThreshold)
	app.Flag("gateway.max-routes", "Cap on distinct route label values; routes beyond it count as other.").Default(strconv.Itoa(c.MaxRoutes)).IntVar(&c.MaxRoutes)
	app.Flag("gateway.cluster", "Loki stream label cluster of forwarded lines (metrics get it from target labels).").StringVar(&c.Cluster)
	app.Flag("gateway.name", "Loki stream label gateway of forwarded lines.").StringVar(&c.Gateway)
	l := &c.Loki
	app.Flag("gateway.loki.url", "Loki push endpoint for the access log lines, e.g. http://loki:3100/loki/api/v1/push; empty turns forwarding off.").StringVar(&l.URL)
	app.Flag("gateway.loki.tenant-id", "Loki tenant (X-Scope-OrgID).").StringVar(&l.TenantID)
	app.Flag("gateway.loki.batch-wait", "Longest an entry waits before its batch is pushed.").Default(l.BatchWait.String()).DurationVar(&l.BatchWait)
	app.Flag("gateway.loki.batch-size", "Most bytes of lines in one push.").Default(strconv.Itoa(l.BatchSize)).IntVar(&l.BatchSize)
	app.Flag("gateway.loki.queue-capacity", "Entries queued in front of the Loki client; beyond it they are dropped and counted, never blocking the tailer.").Default(strconv.Itoa(l.QueueCapacity)).IntVar(&l.QueueCapacity)
	app.Flag("gateway.loki.timeout", "Timeout of one push.").Default(l.Timeout.String()).DurationVar(&l.Timeout)
	app.Flag("gateway.loki.max-retries", "Retries of a failed push before its batch is dropped and counted; must be above 0.").Default(strconv.Itoa(l.MaxRetries)).IntVar(&l.MaxRetries)
	app.Flag("gateway.loki.min-backoff", "First retry delay.").Default(l.MinBackoff.String()).DurationVar(&l.MinBackoff)
	app.Flag("gateway.loki.max-backoff", "Longest retry delay.").Default(l.MaxBackoff.String()).DurationVar(&l.MaxBackoff)
	return c
}

// flagConfig is the Config the flags fill, with the logs as written.
type flagConfig struct {
	Config
	logs []string
}

func (c *flagConfig) New(d exporters.Deps) (exporters.Collector, error) {
	cfg := c.Config
	var err error
	if cfg.Logs, err = exporters.ParseEach("gateway.log", c.logs, ParseLogSpec); err != nil {
		return nil, err
	}
	return New(cfg, d.Logger)
}

// CheckOff implements exporters.OffChecker: logs to follow mean the user
// wants the exporter, not that they be ignored.
func (c *flagConfig) CheckOff() error {
	if len(c.logs) > 0 {
		return errors.New("--gateway.log given but the gateway exporter is off: add --exporter.gateway")
	}
	return nil
}
