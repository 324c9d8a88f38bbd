// Package engine evaluates Cascade's rule files with Prometheus's own rule
// manager and PromQL engine, over the embedded TSDB, and sends the alerts to
// every configured Alertmanager with Prometheus's notifier. The rule files
// are the embedded defaults unless the configuration's rule_files names
// others, so the same files run here, in Prometheus, and in the rulers of
// Mimir, Thanos or VictoriaMetrics.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/logging"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
)

// EmbeddedPrefix marks a rule file read from the embedded defaults.
const EmbeddedPrefix = "embedded:"

// Prometheus's defaults for the rule manager; its zero values differ.
const (
	DefaultResendDelay     = time.Minute
	DefaultOutageTolerance = time.Hour
	DefaultForGracePeriod  = 10 * time.Minute
	DefaultQueryTimeout    = 2 * time.Minute
	DefaultLookbackDelta   = 5 * time.Minute
)

// EvalHook runs after every evaluation of a rule group, with the group's
// fresh alert states: the incident lifecycle and tracing hang here.
type EvalHook func(ctx context.Context, g *rules.Group, ts time.Time)

// Options are fixed for the life of an engine.
type Options struct {
	// Storage is where rules read and recording rules write.
	Storage storage.Storage
	// Queryable, if set, is what rule expressions read instead of Storage
	// (a remote query API merged with Storage: see rules/remotequery).
	// Restoring alert state after a restart still reads Storage.
	Queryable storage.Queryable
	// DefaultRules holds the embedded rule files (*.yml), used when the
	// configuration names no rule_files.
	DefaultRules fs.FS
	// ExternalURL is the link alerts carry back to their source.
	ExternalURL *url.URL
	// AfterEval, if set, runs after each group evaluation.
	AfterEval EvalHook

	ResendDelay     time.Duration
	OutageTolerance time.Duration
	ForGracePeriod  time.Duration

	Registerer prometheus.Registerer
	// SDMetrics are the service discovery metrics, registered once per
	// registry; nil registers them in Registerer.
	SDMetrics map[string]discovery.DiscovererMetrics
	Logger    *slog.Logger
}

// Engine owns the rule manager, the query engine and the notifier.
type Engine struct {
	opts     Options
	logger   *slog.Logger
	queries  *promql.Engine
	manager  *rules.Manager
	notifier *notifier.Manager
	sender   *heldSender
	amSD     *discovery.Manager
	cancel   context.CancelFunc
	ctx      context.Context

	stopOnce sync.Once
	mu       sync.Mutex
	files    []string // rule files currently loaded

	// ruleQueryOffset is global.rule_query_offset, read by every group that
	// sets no query_offset of its own at each evaluation.
	ruleQueryOffset atomic.Int64
}

// New builds an engine; nothing is evaluated until ApplyConfig and Run.
func New(opts Options) (*Engine, error) {
	if opts.Storage == nil {
		return nil, errors.New("engine: storage is required")
	}
	if opts.DefaultRules == nil {
		return nil, errors.New("engine: default rules are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.ExternalURL == nil {
		opts.ExternalURL = &url.URL{Scheme: "http", Host: "localhost:9848"}
	}
	if opts.Queryable == nil {
		opts.Queryable = opts.Storage
	}
	opts.ResendDelay = cmp.Or(opts.ResendDelay, DefaultResendDelay)
	opts.OutageTolerance = cmp.Or(opts.OutageTolerance, DefaultOutageTolerance)
	opts.ForGracePeriod = cmp.Or(opts.ForGracePeriod, DefaultForGracePeriod)

	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{opts: opts, logger: opts.Logger, ctx: ctx, cancel: cancel}
	e.queries = promql.NewEngine(queryEngineOptions(opts.Logger, opts.Registerer))
	const queueCapacity = 10_000
	e.notifier = notifier.NewManager(&notifier.Options{
		QueueCapacity: queueCapacity,
		Registerer:    opts.Registerer,
	}, model.UTF8Validation, opts.Logger.With("component", "notifier"))
	e.sender = newHeldSender(e.notifier, queueCapacity, opts.Registerer)

	sdMetrics := opts.SDMetrics
	if sdMetrics == nil {
		var err error
		if sdMetrics, err = discovery.CreateAndRegisterSDMetrics(opts.Registerer); err != nil {
			cancel()
			return nil, fmt.Errorf("engine: discovery metrics: %w", err)
		}
	}
	// Discovery tells the notifier about Alertmanagers at most once per
	// Updatert (5 s by default), the first time included; alerts wait for
	// it (see heldSender), so it answers every second. It sends only when
	// something changed: a second costs nothing when nothing does.
	e.amSD = discovery.NewManager(ctx, opts.Logger.With("component", "alertmanager discovery"), opts.Registerer, sdMetrics,
		discovery.Name("notify"), discovery.Updatert(time.Second))
	if e.amSD == nil {
		cancel()
		return nil, errors.New("engine: cannot create the Alertmanager discovery manager")
	}

	e.manager = rules.NewManager(&rules.ManagerOptions{
		NameValidationScheme: model.UTF8Validation,
		ExternalURL:          opts.ExternalURL,
		QueryFunc:            rules.EngineQueryFunc(e.queries, opts.Queryable),
		NotifyFunc:           tracedNotify(rules.SendAlerts(e.sender, opts.ExternalURL.String())),
		Context:              ctx,
		Appendable:           opts.Storage,
		Queryable:            opts.Storage,
		Logger:               opts.Logger.With("component", "rule manager"),
		Registerer:           opts.Registerer,
		OutageTolerance:      opts.OutageTolerance,
		ForGracePeriod:       opts.ForGracePeriod,
		ResendDelay:          opts.ResendDelay,
		GroupLoader:          loader{embedded: opts.DefaultRules},
		DefaultRuleQueryOffset: func() time.Duration {
			return time.Duration(e.ruleQueryOffset.Load())
		},
	})
	return e, nil
}

// ApplyConfig loads the rule files (cfg.RuleFiles, or the embedded defaults),
// the alerting section and the global settings of evaluation (interval,
// external labels, rule query offset, query log). If the rules do not load,
// the previous rules keep running and the error says why.
func (e *Engine) ApplyConfig(cfg *config.Config) error {
	files, err := e.ruleFiles(cfg)
	if err != nil {
		return err
	}
	if err := e.applyQueryLog(cfg.GlobalConfig.QueryLogFile); err != nil {
		return fmt.Errorf("engine: global.query_log_file: %w", err)
	}
	e.ruleQueryOffset.Store(int64(cfg.GlobalConfig.RuleQueryOffset))
	if err := e.notifier.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("engine: alerting: %w", err)
	}
	amSD := make(map[string]discovery.Configs)
	for k, v := range cfg.AlertingConfig.AlertmanagerConfigs.ToMap() {
		amSD[k] = v.ServiceDiscoveryConfigs
	}
	if err := e.amSD.ApplyConfig(amSD); err != nil {
		return fmt.Errorf("engine: alertmanager discovery: %w", err)
	}
	interval := time.Duration(cfg.GlobalConfig.EvaluationInterval)
	if err := e.manager.Update(interval, files, cfg.GlobalConfig.ExternalLabels, e.opts.ExternalURL.String(), e.evalIteration); err != nil {
		return fmt.Errorf("engine: %w (see the log for each rule file's errors)", err)
	}
	e.mu.Lock()
	e.files = files
	e.mu.Unlock()
	return nil
}

// applyQueryLog logs every query the rules run to path, as JSON lines, or
// stops logging them when path is empty. The file is opened again at every
// reload, as Prometheus does, so a rotated log is followed.
func (e *Engine) applyQueryLog(path string) error {
	if path == "" {
		e.queries.SetQueryLogger(nil)
		return nil
	}
	l, err := logging.NewJSONFileLogger(path)
	if err != nil {
		return err
	}
	e.queries.SetQueryLogger(l)
	return nil
}

// ruleFiles expands cfg.RuleFiles, or names the embedded files.
func (e *Engine) ruleFiles(cfg *config.Config) ([]string, error) {
	files, err := RuleFiles(e.opts.DefaultRules, cfg.RuleFiles...)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// RuleFiles expands rule_files patterns as every part of Cascade reads
// them: each a glob of files on disk, or after EmbeddedPrefix a glob of the
// embedded ones, and each must match a file. No pattern at all names every
// embedded file.
func RuleFiles(defaults fs.FS, patterns ...string) ([]string, error) {
	if len(patterns) == 0 {
		patterns = []string{EmbeddedPrefix + "*.yml"}
	}
	var files []string
	for _, pattern := range patterns {
		matches, err := GlobRuleFiles(defaults, pattern)
		if err != nil {
			return nil, fmt.Errorf("rule_files %q: %w", pattern, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("rule_files %q matches no file", pattern)
		}
		files = append(files, matches...)
	}
	return files, nil
}

// GlobRuleFiles expands one pattern: a glob of files on disk, or after
// EmbeddedPrefix a glob of defaults, whose matches keep the prefix.
func GlobRuleFiles(defaults fs.FS, pattern string) ([]string, error) {
	name, embedded := strings.CutPrefix(pattern, EmbeddedPrefix)
	if !embedded {
		return filepath.Glob(pattern)
	}
	if defaults == nil {
		return nil, errors.New("no embedded rule files here")
	}
	matches, err := fs.Glob(defaults, name)
	for i := range matches {
		matches[i] = EmbeddedPrefix + matches[i]
	}
	return matches, err
}

// CheckRules parses rule files as ApplyConfig would, without loading them:
// `cascade rules check` and reload dry runs use it.
func CheckRules(defaults fs.FS, files ...string) error {
	l := loader{embedded: defaults}
	var errs []error
	for _, f := range files {
		groups, ferrs := l.Load(f, false, model.UTF8Validation)
		for _, err := range ferrs {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if _, err := parser.ParseExpr(r.Expr); err != nil {
					errs = append(errs, fmt.Errorf("%s: group %q: %w", f, g.Name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// RuleFiles lists the rule files in force.
func (e *Engine) RuleFiles() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.files)
}

// Run evaluates rules and sends alerts until ctx is done. If a part of the
// engine ends before that (the rule manager or the Alertmanager discovery),
// Run stops the rest and returns an error saying which.
func (e *Engine) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	targets := make(chan map[string][]*targetgroup.Group)
	go e.notifier.Run(targets)
	go e.sender.relay(e.amSD.SyncCh(), targets, e.ctx.Done())
	go func() {
		err := e.amSD.Run() // the context's error once stop has run
		if err == nil {
			err = errors.New("without an error")
		}
		errc <- fmt.Errorf("engine: the Alertmanager discovery stopped: %w", err)
	}()
	go func() {
		e.manager.Run() // returns once stop has stopped every group
		errc <- errors.New("engine: the rule manager stopped unexpectedly")
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	e.stop()
	return err
}

// stop stops evaluation and the notifier, once.
func (e *Engine) stop() {
	e.stopOnce.Do(func() {
		e.manager.Stop()
		e.notifier.Stop()
		e.queries.SetQueryLogger(nil) // closes the query log
		e.cancel()
	})
}

// QueryFunc evaluates PromQL at a time, as the rules do.
func (e *Engine) QueryFunc() rules.QueryFunc {
	return rules.EngineQueryFunc(e.queries, e.opts.Queryable)
}

// Groups returns the loaded rule groups, for inspection and backtests.
func (e *Engine) Groups() []*rules.Group { return e.manager.RuleGroups() }

// TracerName names the tracer of the engine's spans.
const TracerName = "github.com/cascade-sre/cascade/rules/engine"

// evalIteration evaluates a group once, then runs the AfterEval hook, inside
// one span: Prometheus's own span of each rule is its child. Attributes are
// computed only when the span records, so with tracing off the span is
// OpenTelemetry's no-op and costs next to nothing.
func (e *Engine) evalIteration(ctx context.Context, g *rules.Group, ts time.Time) {
	ctx, span := otel.Tracer(TracerName).Start(ctx, "rule group evaluation")
	defer span.End()
	rules.DefaultEvalIterationFunc(ctx, g, ts)
	if e.opts.AfterEval != nil {
		e.opts.AfterEval(ctx, g, ts)
	}
	if !span.IsRecording() {
		return
	}
	var firing, failed int
	for _, r := range g.Rules() {
		if r.Health() == rules.HealthBad {
			failed++
		}
		if ar, ok := r.(*rules.AlertingRule); ok {
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					firing++
				}
			}
		}
	}
	span.SetAttributes(
		attribute.String("rule_group.name", g.Name()),
		attribute.String("rule_group.file", g.File()),
		attribute.Float64("rule_group.interval_seconds", g.Interval().Seconds()),
		attribute.Int("rule_group.rules", len(g.Rules())),
		attribute.Int("rule_group.rules_failed", failed),
		attribute.Float64("rule_group.evaluation_seconds", g.GetEvaluationTime().Seconds()),
		attribute.Int("rule_group.alerts_firing", firing),
	)
	if failed > 0 {
		span.SetStatus(codes.Error, fmt.Sprintf("%d rules failed", failed))
	}
}

// tracedNotify wraps next in a span per batch of alerts handed to the
// notifier (whose queue sends them to every Alertmanager on its own), as a
// child of the span of the alerting rule that produced them.
func tracedNotify(next rules.NotifyFunc) rules.NotifyFunc {
	return func(ctx context.Context, expr string, alerts ...*rules.Alert) {
		if len(alerts) == 0 {
			next(ctx, expr, alerts...)
			return
		}
		ctx, span := otel.Tracer(TracerName).Start(ctx, "notify")
		defer span.End()
		if span.IsRecording() {
			var names []string
			for _, a := range alerts {
				if n := a.Labels.Get(model.AlertNameLabel); !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			slices.Sort(names)
			span.SetAttributes(
				attribute.Int("alerts.count", len(alerts)),
				attribute.StringSlice("alerts.names", names),
			)
		}
		next(ctx, expr, alerts...)
	}
}

// loader reads embedded rule files by name and the rest from disk.
type loader struct{ embedded fs.FS }

func (l loader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	return ParseRuleFile(l.embedded, identifier, ignoreUnknownFields, scheme)
}

func (loader) Parse(query string) (parser.Expr, error) { return parser.ParseExpr(query) }

// ParseRuleFile parses a rule file: after EmbeddedPrefix one of defaults,
// else one on disk.
func ParseRuleFile(defaults fs.FS, name string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	embedded, ok := strings.CutPrefix(name, EmbeddedPrefix)
	if !ok {
		return rulefmt.ParseFile(name, ignoreUnknownFields, scheme)
	}
	if defaults == nil {
		return nil, []error{errors.New("no embedded rule files here")}
	}
	b, err := fs.ReadFile(defaults, embedded)
	if err != nil {
		return nil, []error{err}
	}
	return rulefmt.Parse(b, ignoreUnknownFields, scheme)
}
