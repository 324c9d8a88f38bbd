package tail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// recorder is a Handler that keeps what it is handed.
type recorder struct {
	mu        sync.Mutex
	lines     []string
	malformed int
}

func (r *recorder) Line(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, string(b))
}

func (r *recorder) Malformed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.malformed++
}

func (r *recorder) got() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), r.malformed
}

// waitLines waits until r holds n lines and then requires exactly want.
func (r *recorder) waitLines(t *testing.T, want []string, malformed int) {
	t.Helper()
	require.Eventually(t, func() bool {
		lines, m := r.got()
		return len(lines) >= len(want) && m >= malformed
	}, 10*time.Second, 5*time.Millisecond, "waiting for %d lines", len(want))
	lines, m := r.got()
	require.Equal(t, want, lines)
	require.Equal(t, malformed, m)
}

func lines(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("line %04d", i))
	}
	return out
}

func appendLines(t *testing.T, path string, ls ...string) {
	t.Helper()
	appendRaw(t, path, strings.Join(ls, "\n")+"\n")
}

func appendRaw(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

type env struct {
	dir, log, positions string
}

func newEnv(t *testing.T) env {
	dir := t.TempDir()
	return env{dir, filepath.Join(dir, "app.log"), filepath.Join(dir, "positions.json")}
}

func (e env) config() Config {
	return Config{
		PositionsFile:     e.positions,
		PositionsInterval: 20 * time.Millisecond,
		PollInterval:      5 * time.Millisecond,
		FromBeginning:     true,
		MaxLineBytes:      256,
		RotationGrace:     100 * time.Millisecond,
	}
}

// start runs a Tailer of the log until the returned stop (or the test's
// end), handing lines to r.
func (e env) start(t *testing.T, r *recorder, file File) (stop func()) {
	t.Helper()
	file.Path, file.Lines = e.log, r
	tl, err := New(Options{Config: e.config()}, file)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestLines: every complete line once, in order; a partial line waits for
// its newline; a line over the limit is malformed, not buffered.
func TestLines(t *testing.T) {
	e := newEnv(t)
	appendLines(t, e.log, lines(0, 3)...)
	r := &recorder{}
	e.start(t, r, File{})
	r.waitLines(t, lines(0, 3), 0)

	appendRaw(t, e.log, "line 00")
	appendRaw(t, e.log, "03\n"+strings.Repeat("x", 300)+"\nline 0004\n")
	r.waitLines(t, lines(0, 5), 1)
}

// TestRenameAndRestart: a renamed file is read to its end while the new
// one is followed; a second Tailer on the same positions goes on exactly
// where the first stopped.
func TestRenameAndRestart(t *testing.T) {
	e := newEnv(t)
	appendLines(t, e.log, lines(0, 10)...)
	r := &recorder{}
	renames := prometheus.NewCounter(prometheus.CounterOpts{Name: "renames"})
	stop := e.start(t, r, File{Renames: renames})
	r.waitLines(t, lines(0, 10), 0)

	require.NoError(t, os.Rename(e.log, e.log+".1"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(renames) == 1 }, 10*time.Second, 5*time.Millisecond)
	appendLines(t, e.log+".1", lines(10, 12)...) // the writer has not reopened yet
	appendLines(t, e.log, lines(12, 15)...)
	r.waitLines(t, lines(0, 15), 0)
	stop()

	appendLines(t, e.log, lines(15, 20)...)
	again := &recorder{}
	e.start(t, again, File{})
	again.waitLines(t, lines(15, 20), 0)
}

func TestReadFile(t *testing.T) {
	e := newEnv(t)
	appendLines(t, e.log, lines(0, 3)...)
	appendRaw(t, e.log, "unterminated")
	r := &recorder{}
	require.NoError(t, ReadFile(t.Context(), e.log, 256, r))
	got, malformed := r.got()
	require.Equal(t, lines(0, 3), got)
	require.Equal(t, 1, malformed, "the unterminated last line")
	require.ErrorContains(t, ReadFile(t.Context(), e.log, 0, r), "positive")
}

// TestNotRegular: a FIFO is refused, never opened for reading (which would
// wait for a writer), and so is a FIFO as the positions file.
func TestNotRegular(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, syscall.Mkfifo(e.log, 0o600))
	fi, err := os.Stat(e.log)
	require.NoError(t, err)
	require.ErrorIs(t, CheckRegular(e.log, fi), ErrNotRegular)
	require.ErrorIs(t, ReadFile(t.Context(), e.log, 256, &recorder{}), ErrNotRegular)

	require.NoError(t, syscall.Mkfifo(e.positions, 0o600))
	_, err = New(Options{Config: e.config()})
	require.ErrorIs(t, err, ErrNotRegular)
}

// TestBadPositions: a positions file that is not one is an error naming it.
func TestBadPositions(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.PollInterval = 0
	_, err := New(Options{Config: cfg})
	require.ErrorContains(t, err, "poll interval 0s must be positive")
	for _, content := range []string{"{not json", `{"version":7,"files":[]}`, `{"version":1,"files":[{"path":"/x","offset":-1}]}`} {
		require.NoError(t, os.WriteFile(e.positions, []byte(content), 0o600))
		_, err := New(Options{Config: e.config()})
		require.ErrorContains(t, err, e.positions, content)
	}
}
