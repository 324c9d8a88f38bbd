package engine

import (
	"context"
	"io/fs"
	"log/slog"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/internal/tracing"
	cascaderules "github.com/cascade-sre/cascade/rules"
)

// tracedRules is one group of a recording rule and two alerts, one firing at
// once and one never.
var tracedRules = fstest.MapFS{"traced.yml": {Data: []byte(`groups:
  - name: traced
    rules:
      - record: cascade:test_one
        expr: vector(1)
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: page}
      - alert: NeverFiring
        expr: vector(0) > 1
`)}}

// startTracing points Cascade's tracing manager at recv as a `tracing:`
// section would, by OTLP/HTTP, sampling every trace.
func startTracing(t testing.TB, version string, recv *testenv.OTLPReceiver) {
	t.Helper()
	cfg, err := config.Load("tracing:\n  client_type: http\n  insecure: true\n  sampling_fraction: 1\n  endpoint: "+recv.Endpoint()+"\n", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tr := tracing.NewManager(version, nil)
	require.NoError(t, tr.ApplyConfig(cfg.TracingConfig))
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
}

func newTestEngine(t testing.TB, defaults fs.FS, interval string) *Engine {
	t.Helper()
	e, err := New(Options{
		Storage:      teststorage.New(t),
		DefaultRules: defaults,
		ResendDelay:  time.Nanosecond, // every evaluation hands its alerts to the notifier
	})
	require.NoError(t, err)
	cfg, err := config.Load("global:\n  evaluation_interval: "+interval+"\n", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, e.ApplyConfig(cfg))
	return e
}

// TestTracesEvaluationAndNotification runs the engine with tracing pointed
// at an OTLP/HTTP receiver: each evaluation cycle is a root span carrying the
// group's figures, Prometheus's span of each rule is its child, and each
// batch of alerts handed to the notifier is a span under its rule.
func TestTracesEvaluationAndNotification(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // export every 100 ms, not 5 s
	recv := testenv.OTLPReceiverForTest(t)
	startTracing(t, "test-version", recv)

	e := newTestEngine(t, tracedRules, "200ms")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Wait for a whole cycle: its span and its rule spans, exported.
	var cycle testenv.Span
	var children []testenv.Span
	require.Eventually(t, func() bool {
		spans := recv.Spans()
		for _, s := range spans {
			if s.Name != "rule group evaluation" || s.Attributes["rule_group.alerts_firing"] != "1" {
				continue
			}
			children = children[:0]
			for _, c := range spans {
				if c.ParentSpanID == s.SpanID {
					children = append(children, c)
				}
			}
			if len(children) == 3 {
				cycle = s
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "no complete evaluation cycle arrived")

	require.Empty(t, cycle.ParentSpanID, "a cycle is the root of its trace")
	require.Equal(t, "cascade", cycle.Resource["service.name"])
	require.Equal(t, "test-version", cycle.Resource["service.version"])
	require.Equal(t, TracerName, cycle.Scope)
	require.Equal(t, "traced", cycle.Attributes["rule_group.name"])
	require.Equal(t, EmbeddedPrefix+"traced.yml", cycle.Attributes["rule_group.file"])
	require.Equal(t, "0.2", cycle.Attributes["rule_group.interval_seconds"])
	require.Equal(t, "3", cycle.Attributes["rule_group.rules"])
	require.Equal(t, "0", cycle.Attributes["rule_group.rules_failed"])
	require.NotEmpty(t, cycle.Attributes["rule_group.evaluation_seconds"])

	var ruleNames []string
	var firingRule testenv.Span
	for _, c := range children {
		require.Equal(t, "rule", c.Name)
		require.Equal(t, cycle.TraceID, c.TraceID)
		ruleNames = append(ruleNames, c.Attributes["name"])
		if c.Attributes["name"] == "AlwaysFiring" {
			firingRule = c
		}
	}
	slices.Sort(ruleNames)
	require.Equal(t, []string{"AlwaysFiring", "NeverFiring", "cascade:test_one"}, ruleNames)

	var notify []testenv.Span
	for _, s := range recv.Spans() {
		if s.Name == "notify" && s.TraceID == cycle.TraceID {
			notify = append(notify, s)
		}
	}
	require.Len(t, notify, 1, "one batch of alerts in the cycle: the firing rule's")
	require.Equal(t, firingRule.SpanID, notify[0].ParentSpanID)
	require.Equal(t, "1", notify[0].Attributes["alerts.count"])
	require.Equal(t, "AlwaysFiring", notify[0].Attributes["alerts.names"])
	require.Zero(t, recv.Malformed())
}

// BenchmarkEvalIteration is one evaluation of each embedded rule group (over
// an empty TSDB, so the rules' own cost is small and tracing's share is at
// its largest): Prometheus's evaluation alone (baseline), then the engine's
// with tracing off and on (exporting by OTLP/HTTP).
func BenchmarkEvalIteration(b *testing.B) {
	bench := func(b *testing.B, iterate rules.GroupEvalIterationFunc) {
		e := newTestEngine(b, cascaderules.Files(), "15s")
		if iterate == nil {
			iterate = e.evalIteration
		}
		groups := e.Groups()
		require.NotEmpty(b, groups)
		ctx := context.Background()
		ts := time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			ts = ts.Add(time.Second)
			for _, g := range groups {
				iterate(ctx, g, ts)
			}
		}
	}
	// Off must run first: it is the process's state before any provider was
	// installed, exactly `cascade run` without a tracing endpoint.
	b.Run("baseline", func(b *testing.B) { bench(b, rules.DefaultEvalIterationFunc) })
	b.Run("tracing=off", func(b *testing.B) { bench(b, nil) })
	b.Run("tracing=on", func(b *testing.B) {
		startTracing(b, "bench", testenv.OTLPReceiverForTest(b))
		bench(b, nil)
	})
}
