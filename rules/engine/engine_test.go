package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
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

// TestRuleFiles: patterns are globs on disk or, after the prefix, of the
// embedded files; each must match; none names every embedded file.
func TestRuleFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.yml", "b.yml", "c.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("groups: []\n"), 0o644))
	}
	embedded := fstest.MapFS{"incident.yml": {}, "symptoms.yml": {}}
	for _, c := range []struct {
		name     string
		defaults fs.FS
		patterns []string
		want     []string
		err      string
	}{
		{name: "none: every embedded file", defaults: embedded, want: []string{"embedded:incident.yml", "embedded:symptoms.yml"}},
		{name: "a glob on disk", defaults: embedded, patterns: []string{filepath.Join(dir, "*.yml")},
			want: []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")}},
		{name: "embedded and disk, in order", defaults: embedded, patterns: []string{"embedded:s*.yml", filepath.Join(dir, "a.yml")},
			want: []string{"embedded:symptoms.yml", filepath.Join(dir, "a.yml")}},
		{name: "no match", defaults: embedded, patterns: []string{filepath.Join(dir, "*.yaml")}, err: "matches no file"},
		{name: "no embedded match", defaults: embedded, patterns: []string{"embedded:x.yml"}, err: `"embedded:x.yml" matches no file`},
		{name: "bad pattern", defaults: embedded, patterns: []string{"["}, err: `rule_files "[": syntax error in pattern`},
		{name: "no embedded files", patterns: []string{"embedded:incident.yml"}, err: "no embedded rule files here"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := RuleFiles(c.defaults, c.patterns...)
			if c.err != "" {
				require.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}
