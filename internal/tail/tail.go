// Package tail follows files like tail -F and hands each complete line to
// a callback: through rename and copytruncate rotation, reading a
// rotated-away file until it stops growing, with a positions file so that
// a restart neither loses nor repeats a line. Offsets only move past
// complete lines; a line longer than the limit is skipped without being
// buffered. What it reads is the caller's business: the gateway exporter
// parses access logs with it.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Handler receives the lines of one followed file, from one goroutine.
type Handler interface {
	// Line gets a complete line without its newline. line is only valid
	// during the call.
	Line(line []byte)
	// Malformed is called instead for a line longer than the limit, and
	// for one left unfinished in a file that will not grow again.
	Malformed()
}

// Config says how files are followed. Tailer's callers embed it in their
// own configuration.
type Config struct {
	// PositionsFile keeps, for each path, the files (device and inode) and
	// the offsets after the last lines handled, so that a restart neither
	// loses nor repeats a line. Empty: none, and every start begins at the
	// end of the files (or at their start with FromBeginning).
	PositionsFile string
	// PositionsInterval is how often positions are written (atomically);
	// they are written when Run ends too.
	PositionsInterval time.Duration
	// PollInterval is how often the paths are checked for new lines and
	// rotation.
	PollInterval time.Duration
	// FromBeginning reads a file that has no saved position from its start
	// instead of its end. Files that appear after start (rotation) are
	// always read from their start.
	FromBeginning bool
	// MaxLineBytes bounds a line; a longer one is malformed and skipped
	// without being buffered.
	MaxLineBytes int
	// RotationGrace is how long a rotated-away file is still read after it
	// stopped growing, for writers that reopen their file late.
	RotationGrace time.Duration
}

// MaxMaxLineBytes keeps one file's buffer within reason.
const MaxMaxLineBytes = 16 << 20

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.PositionsFile != "" && !filepath.IsAbs(c.PositionsFile):
		return fmt.Errorf("positions file %q must be an absolute path", c.PositionsFile)
	case c.PositionsInterval <= 0:
		return fmt.Errorf("positions interval %s must be positive", c.PositionsInterval)
	case c.PollInterval <= 0:
		return fmt.Errorf("poll interval %s must be positive", c.PollInterval)
	case c.MaxLineBytes < 256 || c.MaxLineBytes > MaxMaxLineBytes:
		return fmt.Errorf("max line bytes %d must be between 256 and %d", c.MaxLineBytes, MaxMaxLineBytes)
	case c.RotationGrace < 0:
		return fmt.Errorf("rotation grace %s must not be negative", c.RotationGrace)
	}
	return nil
}

// Options are a Tailer's configuration and what it reports to.
type Options struct {
	Config
	// PositionsWriteErrors counts failed writes of the positions file.
	PositionsWriteErrors prometheus.Counter
	Logger               *slog.Logger
}

// File is one path to follow, where its lines go, and what counts what
// happens to it.
type File struct {
	Path  string
	Lines Handler
	// ReadErrors counts errors opening, checking or reading the path's
	// files, and each FIFO, directory or device found at the path.
	ReadErrors prometheus.Counter
	// Renames and Truncates count rotations.
	Renames, Truncates prometheus.Counter
	// Abandoned counts rotated-away files closed because they kept failing
	// to read.
	Abandoned prometheus.Counter
}

// Tailer follows a set of paths.
type Tailer struct {
	opts  Options
	files []File
	saved map[string][]Position
}

// New checks the configuration and reads the positions file; nothing is
// followed until Run.
func New(opts Options, files ...File) (*Tailer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	saved, err := loadPositions(opts.PositionsFile)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Counters left out count nowhere.
	orNew := func(c *prometheus.Counter) {
		if *c == nil {
			*c = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
		}
	}
	orNew(&opts.PositionsWriteErrors)
	files = slices.Clone(files)
	for i := range files {
		f := &files[i]
		for _, c := range []*prometheus.Counter{&f.ReadErrors, &f.Renames, &f.Truncates, &f.Abandoned} {
			orNew(c)
		}
	}
	return &Tailer{opts: opts, files: files, saved: saved}, nil
}

// Run follows every path, each in a goroutine of its own, until ctx ends;
// then it writes the positions after the last line handled.
func (t *Tailer) Run(ctx context.Context) {
	store := newPositionStore(t.opts.PositionsFile, t.saved)
	var wg sync.WaitGroup
	for _, file := range t.files {
		f := newFollower(file, &t.opts, store)
		saved := t.saved[file.Path]
		wg.Go(func() { f.run(ctx, saved) })
	}
	ticker := time.NewTicker(t.opts.PositionsInterval)
	defer ticker.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-ticker.C:
			t.writePositions(store)
		}
	}
	wg.Wait()
	t.writePositions(store)
}

func (t *Tailer) writePositions(s *positionStore) {
	if err := s.write(); err != nil {
		t.opts.PositionsWriteErrors.Inc()
		t.opts.Logger.Error("cannot write positions", "file", t.opts.PositionsFile, "err", err)
	}
}

// ReadFile hands every line of the file at path to h, from its start to its
// end, in the calling goroutine, with no positions and no rotation
// handling: a one-shot pass for benchmarks and backfills. A last line
// without its newline is malformed.
func ReadFile(ctx context.Context, path string, maxLine int, h Handler) error {
	if maxLine <= 0 {
		return errors.New("the line limit must be positive")
	}
	t, err := openTail(path, maxLine)
	if err != nil {
		return err
	}
	defer t.close()
	if _, err := t.read(ctx, h, maxLine); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	t.finish(h)
	return ctx.Err()
}
