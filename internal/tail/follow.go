package tail

import (
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// follower follows one configured path like tail -F: it reads the file at
// the path, notices when another file takes its place (rename rotation) and
// keeps reading the old one until it stops growing, and starts over when
// the file is truncated in place (copytruncate).
type follower struct {
	File
	opts   *Options
	store  *positionStore
	logger *slog.Logger
	now    func() time.Time

	cur       *tailFile
	rotated   []*tailFile
	published []Position
	lastErr   string
	waiting   bool        // the path did not exist at the last poll
	refused   refusedFile // the last file at the path that is not a regular file
}

// refusedFile tells a refused file from the next one at the path, which may
// get the same inode number once the first is gone.
type refusedFile struct {
	id    fileID
	mode  fs.FileMode
	mtime time.Time
}

func refusedOf(fi os.FileInfo) refusedFile {
	return refusedFile{id: idOf(fi), mode: fi.Mode(), mtime: fi.ModTime()}
}

func newFollower(file File, opts *Options, store *positionStore) *follower {
	return &follower{
		File:   file,
		opts:   opts,
		store:  store,
		logger: opts.Logger.With("log", file.Path),
		now:    time.Now,
	}
}

// run follows the path until ctx ends, then publishes its final positions.
func (f *follower) run(ctx context.Context, saved []Position) {
	f.restore(saved)
	f.publish()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		progress := f.poll(ctx)
		f.publish()
		if ctx.Err() != nil {
			break
		}
		if progress {
			continue
		}
		timer.Reset(f.opts.PollInterval)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	f.publish()
	if f.cur != nil {
		f.cur.close()
	}
	for _, r := range f.rotated {
		r.close()
	}
}

// restore reopens the files of the saved positions: the one at the path
// if it is still the same file, and rotated ones wherever they went.
func (f *follower) restore(saved []Position) {
	now := f.now()
	for _, e := range saved {
		id := fileID{dev: e.Device, ino: e.Inode}
		window, _ := hex.DecodeString(e.Window)
		var t *tailFile
		if !e.Rotated {
			if fi, err := os.Stat(f.Path); err == nil && idOf(fi) == id {
				t = f.openAt(f.Path, id)
			}
		}
		if t != nil {
			f.seekSaved(t, e, window)
			f.cur = t
			continue
		}
		// Rotated away, now or while the exporter was down.
		t = f.findRotated(e, id)
		if t == nil {
			f.logger.Warn("a log file of the saved positions is gone; lines it had after the saved offset are lost",
				"device", e.Device, "inode", e.Inode, "offset", e.Offset, "last_seen_as", e.File)
			continue
		}
		f.seekSaved(t, e, window)
		t.rotatedAt, t.lastData = now, now
		f.rotated = append(f.rotated, t)
	}
	if f.cur != nil {
		return
	}
	t, err := openTail(f.Path, f.opts.MaxLineBytes)
	if err != nil {
		if fi, serr := os.Stat(f.Path); errors.Is(err, ErrNotRegular) && serr == nil {
			f.refused = refusedOf(fi) // counted once, here
		}
		if !errors.Is(err, fs.ErrNotExist) {
			f.readError(err)
		}
		f.logger.Info("waiting for the log to appear")
		f.waiting = true
		return
	}
	// A file with no saved position: new since the last run if the path had
	// positions, else read from the end like tail -F (or the start).
	if len(saved) == 0 && !f.opts.FromBeginning {
		if fi, err := t.f.Stat(); err == nil {
			if _, err := t.seek(fi.Size(), nil, 0, 0); err != nil {
				f.readError(err)
			}
		}
	}
	f.cur = t
}

func (f *follower) seekSaved(t *tailFile, e Position, window []byte) {
	ok, err := t.seek(e.Offset, window, e.HeadLen, e.HeadHash)
	if err != nil {
		f.readError(err)
	}
	if !ok {
		f.Truncates.Inc()
		f.logger.Info("log was truncated since the saved position; reading it from the start", "file", t.f.Name(), "offset", e.Offset)
	}
}

// openAt opens path and returns it only if it is the file id.
func (f *follower) openAt(path string, id fileID) *tailFile {
	t, err := openTail(path, f.opts.MaxLineBytes)
	if err != nil {
		return nil
	}
	if t.id != id {
		t.close()
		return nil
	}
	return t
}

// findRotated looks for a rotated file by its device and inode: first where
// it was last seen, then among the files next to the log.
func (f *follower) findRotated(e Position, id fileID) *tailFile {
	if e.File != "" {
		if t := f.openAt(e.File, id); t != nil {
			return t
		}
	}
	dirs := []string{filepath.Dir(f.Path)}
	if e.File != "" && filepath.Dir(e.File) != dirs[0] {
		dirs = append(dirs, filepath.Dir(e.File))
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range entries {
			p := filepath.Join(dir, de.Name())
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && idOf(fi) == id {
				if t := f.openAt(p, id); t != nil {
					return t
				}
			}
		}
	}
	return nil
}

// poll reads what is new, handling rotation. It reports whether it read
// anything.
func (f *follower) poll(ctx context.Context) bool {
	progress := false
	now := f.now()
	fi, statErr := os.Stat(f.Path)
	missing := errors.Is(statErr, fs.ErrNotExist)
	if statErr != nil && !missing {
		f.readError(statErr)
	}
	if f.cur != nil {
		if missing || statErr == nil && idOf(fi) != f.cur.id {
			// Renamed (or deleted): another file will take the path. The
			// old one is read on from the rotated list until it stops
			// growing, since the writer may not have reopened yet.
			f.cur.rotatedAt, f.cur.lastData = now, now
			f.rotated = append(f.rotated, f.cur)
			f.cur = nil
			f.Renames.Inc()
		} else {
			trunc, err := f.cur.truncated()
			if err != nil {
				f.readError(err)
			} else if trunc {
				f.cur.finish(f.Lines)
				f.cur.reset()
				f.Truncates.Inc()
			}
			p, err := f.cur.read(ctx, f.Lines, f.opts.MaxLineBytes)
			if err != nil {
				f.readError(err)
			}
			progress = progress || p
		}
	}
	f.rotated = slices.DeleteFunc(f.rotated, func(t *tailFile) bool {
		p, err := t.read(ctx, f.Lines, f.opts.MaxLineBytes)
		if err != nil {
			f.readError(err)
			t.failures++
		} else {
			t.failures = 0
		}
		if p {
			t.lastData = now
			progress = true
		}
		if ctx.Err() != nil {
			return false
		}
		// A file that keeps failing is let go like one that stopped
		// growing: kept, it would hold its descriptor for good.
		if t.failures > 0 && (t.failures >= maxRotatedFailures || now.Sub(t.lastData) >= f.opts.RotationGrace) {
			f.abandon(t, err)
			return true
		}
		if p || now.Sub(t.lastData) < f.opts.RotationGrace {
			return false
		}
		t.finish(f.Lines)
		t.close()
		return true
	})
	if f.cur == nil && statErr == nil && !fi.Mode().IsRegular() {
		// Rotation put a FIFO or a directory at the path: refused, counted
		// and logged once per file, never opened (a FIFO's open would wait
		// for a writer).
		if r := refusedOf(fi); r != f.refused {
			f.refused = r
			f.readError(CheckRegular(f.Path, fi))
		}
	} else if f.cur == nil && statErr == nil {
		t, err := openTail(f.Path, f.opts.MaxLineBytes)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			f.readError(err)
		default:
			if f.waiting {
				f.logger.Info("log appeared")
			}
			f.cur = t
			p, err := t.read(ctx, f.Lines, f.opts.MaxLineBytes)
			if err != nil {
				f.readError(err)
			}
			progress = progress || p
		}
	}
	if f.cur == nil && !f.waiting {
		f.logger.Info("waiting for the log to appear")
	}
	f.waiting = f.cur == nil
	return progress
}

// abandon closes a rotated file that keeps failing to read, and counts it:
// what it holds after the last line read is lost.
func (f *follower) abandon(t *tailFile, err error) {
	f.Abandoned.Inc()
	f.logger.Warn("closing a rotated log that cannot be read; lines it has after the offset are lost",
		"file", t.f.Name(), "offset", t.committed, "failed_reads", t.failures, "err", err)
	t.close()
}

// readError counts an error and logs it when it differs from the last one,
// so a persistent problem is one log line, not one per poll.
func (f *follower) readError(err error) {
	f.ReadErrors.Inc()
	if msg := err.Error(); msg != f.lastErr {
		f.lastErr = msg
		f.logger.Error("cannot read log", "err", err)
	}
}

// publish hands the current positions to the store when they changed.
func (f *follower) publish() {
	var es []Position
	if f.cur != nil {
		es = append(es, f.cur.entry(f.Path, false))
	}
	for _, r := range f.rotated {
		es = append(es, r.entry(f.Path, true))
	}
	if slices.Equal(es, f.published) {
		return
	}
	f.published = es
	f.store.set(f.Path, es)
}
