package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/dashboards"
)

// TestDashboardsBuild runs `cascade dashboards build --output.dir DIR`: it
// writes every dashboard, byte for byte what the package renders, and says
// clearly when it cannot write.
func TestDashboardsBuild(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		c := newCLI()
		cmd, err := c.parse(args)
		require.NoError(t, err)
		var stdout, stderr bytes.Buffer
		code, ok := c.dash.dispatch(cmd, &stdout, &stderr)
		require.True(t, ok)
		return code, stdout.String(), stderr.String()
	}
	dir := filepath.Join(t.TempDir(), "new", "json")
	code, out, _ := run("dashboards", "build", "--output.dir", dir)
	require.Equal(t, 0, code)
	want, err := dashboards.Render()
	require.NoError(t, err)
	require.Len(t, strings.Fields(out), len(want), "one line per file written")
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, b, got, name)
	}

	blocker := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	code, _, errOut := run("dashboards", "build", "--output.dir", blocker)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, blocker)
}
