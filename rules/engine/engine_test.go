package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/stretchr/testify/require"
)

// applyGlobal applies a configuration with the given global section to e.
func applyGlobal(t *testing.T, e *Engine, global string) {
	t.Helper()
	cfg, err := config.Load("global:\n"+global, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, e.ApplyConfig(cfg))
}

// TestRuleQueryOffsetIsApplied: global.rule_query_offset reaches every
// group that sets no query_offset of its own, and follows a reload.
func TestRuleQueryOffsetIsApplied(t *testing.T) {
	e := newTestEngine(t, tracedRules, "1s")
	groups := e.Groups()
	require.Len(t, groups, 1)
	require.Zero(t, groups[0].QueryOffset())

	applyGlobal(t, e, "  evaluation_interval: 1s\n  rule_query_offset: 30s\n")
	require.Equal(t, 30*time.Second, e.Groups()[0].QueryOffset())
	applyGlobal(t, e, "  evaluation_interval: 1s\n")
	require.Zero(t, e.Groups()[0].QueryOffset())
}

// TestQueryLogFileIsWritten: with global.query_log_file, every query the
// rules run is logged there as a JSON line, as Prometheus logs its queries.
func TestQueryLogFileIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queries.jsonl")
	e := newTestEngine(t, tracedRules, "100ms")
	applyGlobal(t, e, "  evaluation_interval: 100ms\n  query_log_file: "+path+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()

	queries := func() []string {
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		var out []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line struct {
				Params struct{ Query string } `json:"params"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				out = append(out, line.Params.Query)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(queries()) >= 3 }, 10*time.Second, 50*time.Millisecond)
	require.Contains(t, queries(), "vector(1)")
	cancel()
	require.NoError(t, <-done)

	// Unwritable: the reload fails and says which setting.
	cfg, err := config.Load("global:\n  query_log_file: "+filepath.Join(path, "under-a-file")+"\n", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.ErrorContains(t, e.ApplyConfig(cfg), "global.query_log_file")
}
