package gateway

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPositionsThroughSymlink: positions are written with atomicfile, the
// one writer of output files, which replaces the file a symbolic link
// points to and keeps the link (the exporter's own writer replaced the link
// by a regular file).
func TestPositionsThroughSymlink(t *testing.T) {
	env := newTailEnv(t)
	stateDir := t.TempDir()
	target := filepath.Join(stateDir, "positions.json")
	require.NoError(t, os.WriteFile(target, []byte(`{"version":1,"files":[]}`), 0o600))
	require.NoError(t, os.Symlink(target, env.positions))
	appendFile(t, env.log, leaseLines(0, 10))
	e := env.exporter(t)
	stop := runExporter(t, e)
	waitLines(t, e, 10, 0)
	stop()

	fi, err := os.Lstat(env.positions)
	require.NoError(t, err)
	require.Equal(t, os.ModeSymlink, fi.Mode().Type(), "the positions file is still a link")
	pf := savedPositions(t, target)
	require.Len(t, pf.Files, 1)
	require.Equal(t, int64(len(leaseLines(0, 10))), pf.Files[0].Offset)
	fi, err = os.Stat(target)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
