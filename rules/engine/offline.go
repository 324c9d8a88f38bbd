package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
)

// queryEngineOptions are the PromQL engine's settings, the same for the live
// engine and offline evaluation, so a backtest answers as `cascade run` would.
func queryEngineOptions(logger *slog.Logger, reg prometheus.Registerer) promql.EngineOpts {
	return promql.EngineOpts{
		Logger:               logger.With("component", "query engine"),
		Reg:                  reg,
		MaxSamples:           50_000_000,
		Timeout:              DefaultQueryTimeout,
		LookbackDelta:        DefaultLookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	}
}

// OfflineOptions configure an Offline evaluator.
type OfflineOptions struct {
	// Storage holds the series to evaluate over; recording rules and
	// ALERTS/ALERTS_FOR_STATE are written to it.
	Storage storage.Storage
	// DefaultRules are the embedded rule files, used when Files is empty.
	DefaultRules fs.FS
	// Files are rule files (see RuleFiles); empty means the embedded
	// defaults.
	Files []string
	// Interval is the evaluation interval of groups that set none.
	Interval time.Duration
	// Notify receives every batch of alerts the rules would send to
	// Alertmanager, as the live engine's notifier would.
	Notify rules.NotifyFunc
	Logger *slog.Logger
}

// Offline evaluates the rule files at the times its caller chooses, one
// group after the other in file order, over storage the caller filled:
// backtests and the demo run the rules with it. It uses the same rule
// loader and query engine settings as the live engine.
type Offline struct {
	groups []*rules.Group
	query  rules.QueryFunc
}

// NewOffline loads the rule files.
func NewOffline(o OfflineOptions) (*Offline, error) {
	if o.Storage == nil || o.DefaultRules == nil {
		return nil, errors.New("engine: offline evaluation needs storage and the default rules")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Notify == nil {
		o.Notify = func(context.Context, string, ...*rules.Alert) {}
	}
	files, err := RuleFiles(o.DefaultRules, o.Files...)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	reg := prometheus.NewRegistry()
	query := rules.EngineQueryFunc(promql.NewEngine(queryEngineOptions(o.Logger, reg)), o.Storage)
	m := rules.NewManager(&rules.ManagerOptions{
		NameValidationScheme: model.UTF8Validation,
		ExternalURL:          &url.URL{Scheme: "http", Host: "localhost:9848"},
		QueryFunc:            query,
		NotifyFunc:           o.Notify,
		Context:              context.Background(),
		Appendable:           o.Storage,
		Queryable:            o.Storage,
		Logger:               o.Logger.With("component", "rule manager"),
		Registerer:           reg,
		OutageTolerance:      DefaultOutageTolerance,
		ForGracePeriod:       DefaultForGracePeriod,
		ResendDelay:          DefaultResendDelay,
		GroupLoader:          loader{embedded: o.DefaultRules},
	})
	byKey, errs := m.LoadGroups(o.Interval, labels.EmptyLabels(), "", nil, false, files...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("engine: %w", errors.Join(errs...))
	}
	off := &Offline{query: query}
	// In file order, then in the order of the groups in each file.
	l := loader{embedded: o.DefaultRules}
	for _, f := range files {
		rgs, _ := l.Load(f, false, model.UTF8Validation) // loaded above without error
		for _, rg := range rgs.Groups {
			g := byKey[rules.GroupKey(f, rg.Name)]
			// Nothing to restore offline: the alerts start from scratch, and
			// write ALERTS and ALERTS_FOR_STATE from the first evaluation.
			for _, r := range g.AlertingRules() {
				r.SetRestored(true)
			}
			off.groups = append(off.groups, g)
		}
	}
	return off, nil
}

// Groups are the loaded groups, in evaluation order.
func (o *Offline) Groups() []*rules.Group { return o.groups }

// QueryFunc evaluates PromQL over the storage as the rules do.
func (o *Offline) QueryFunc() rules.QueryFunc { return o.query }

// Eval evaluates every group at ts, in order, and calls after (if not nil)
// after each group, as the live engine calls its AfterEval hook.
func (o *Offline) Eval(ctx context.Context, ts time.Time, after EvalHook) {
	for _, g := range o.groups {
		g.Eval(ctx, ts)
		if after != nil {
			after(ctx, g, ts)
		}
	}
}
