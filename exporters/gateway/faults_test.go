package gateway

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
)

// openFDsTo lists this process's file descriptors open on path.
func openFDsTo(t *testing.T, path string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var fds []int
	for _, de := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err != nil || target != path {
			continue
		}
		fd, err := strconv.Atoi(de.Name())
		require.NoError(t, err)
		fds = append(fds, fd)
	}
	return fds
}

// TestFIFOAsLogIsRefused: opening a FIFO for reading waits for a writer,
// which hung the exporter, SIGTERM included. A FIFO or a directory as a
// configured log is refused at start.
func TestFIFOAsLogIsRefused(t *testing.T) {
	env := newTailEnv(t)
	require.NoError(t, syscall.Mkfifo(env.log, 0o600))
	cfg := DefaultConfig()
	cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: env.log}}
	_, err := New(cfg, discardLogger())
	require.ErrorContains(t, err, env.log)
	require.ErrorContains(t, err, "not a regular file")

	dir := filepath.Join(env.dir, "dir.log")
	require.NoError(t, os.Mkdir(dir, 0o700))
	cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: dir}}
	_, err = New(cfg, discardLogger())
	require.ErrorContains(t, err, "not a regular file")
}

// TestFIFOReplacingLog: a FIFO or a directory that a rotation puts at the
// path is counted and logged, once, never opened for good, and shutdown
// completes with a FIFO in place.
func TestFIFOReplacingLog(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 10))
	e := env.exporter(t)
	stop := runExporter(t, e)
	waitLines(t, e, 10, 0)
	readErrors := `cascade_gateway_log_read_errors_total{path="` + env.log + `"}`

	require.NoError(t, os.Rename(env.log, env.log+".1"))
	require.NoError(t, syscall.Mkfifo(env.log, 0o600))
	waitFor(t, 5*time.Second, "the FIFO to be counted", func() bool { return metric(t, e, readErrors) == 1 })
	require.NoError(t, os.Remove(env.log))
	require.NoError(t, os.Mkdir(env.log, 0o700))
	waitFor(t, 5*time.Second, "the directory to be counted", func() bool { return metric(t, e, readErrors) == 2 })
	time.Sleep(10 * e.cfg.PollInterval) // ten polls count nothing more: the test
	require.Equal(t, 2.0, metric(t, e, readErrors), "each file is counted once, not at every poll")
	require.NoError(t, os.Remove(env.log))
	appendFile(t, env.log, leaseLines(10, 15))
	waitLines(t, e, 15, 0)

	// The FIFO again, left in place at shutdown.
	require.NoError(t, os.Rename(env.log, env.log+".2"))
	require.NoError(t, syscall.Mkfifo(env.log, 0o600))
	waitFor(t, 5*time.Second, "the FIFO to be counted", func() bool { return metric(t, e, readErrors) == 3 })
	stop() // fails the test if Run does not return
}

// TestPositionsFileMustBeRegular: reading a FIFO as the positions file
// would hang the start the same way.
func TestPositionsFileMustBeRegular(t *testing.T) {
	env := newTailEnv(t)
	require.NoError(t, syscall.Mkfifo(env.positions, 0o600))
	done := make(chan error, 1)
	go func() { done <- env.exporter(t).Run(t.Context()) }()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("Run hangs on a FIFO as the positions file")
	}
}

// TestRotatedFileThatFailsIsClosed follows a real rename rotation and then
// makes every read of the rotated file fail: the exporter's descriptor of
// it is made to refer to a directory (dup3 over it), so its reads get
// EISDIR from the kernel. The file is closed after the rotation grace,
// counted, and no descriptor is left behind.
func TestRotatedFileThatFailsIsClosed(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 10))
	e := env.exporter(t, func(c *Config) { c.RotationGrace = 500 * time.Millisecond })
	var logs *logtest.Buffer
	e.logger, logs = logtest.New()
	runExporter(t, e)
	waitLines(t, e, 10, 0)

	rotated := env.log + ".1"
	require.NoError(t, os.Rename(env.log, rotated))
	waitFor(t, 5*time.Second, "the rename to be seen", func() bool {
		return metric(t, e, `cascade_gateway_log_rotations_total{kind="rename",path="`+env.log+`"}`) == 1
	})
	fds := openFDsTo(t, rotated)
	require.Len(t, fds, 1, "the rotated file is open once")
	broken := filepath.Join(env.dir, "unreadable.d")
	require.NoError(t, os.Mkdir(broken, 0o700))
	dir, err := os.Open(broken)
	require.NoError(t, err)
	require.NoError(t, syscall.Dup3(int(dir.Fd()), fds[0], syscall.O_CLOEXEC))
	require.NoError(t, dir.Close())
	appendFile(t, rotated, leaseLines(10, 20)) // never read now

	abandoned := `cascade_gateway_log_files_abandoned_total{path="` + env.log + `"}`
	waitFor(t, 10*time.Second, "the failing rotated file to be closed", func() bool {
		return metric(t, e, abandoned) == 1
	})
	require.Empty(t, openFDsTo(t, broken), "its descriptor is closed")
	require.Positive(t, metric(t, e, `cascade_gateway_log_read_errors_total{path="`+env.log+`"}`))
	require.Contains(t, logs.String(), "closing a rotated log that cannot be read")
	require.Equal(t, 1, logs.Count("closing a rotated log"))
	waitFor(t, 5*time.Second, "the positions to forget it", func() bool {
		pf := savedPositions(t, env.positions)
		return len(pf.Files) == 0
	})
	require.Equal(t, 10.0, metric(t, e, `cascade_gateway_log_lines_total{result="parsed"}`))
}
