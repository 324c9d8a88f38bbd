package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	// windowSize is how many bytes before the read position are kept to
	// recognise a file that was truncated and rewritten past that position.
	windowSize = 32
	// headSize is how much of the file's start is fingerprinted for the
	// same purpose: the bytes before the position are often alike from line
	// to line (same user agent at the end), while the first line holds a
	// timestamp that a rewritten file does not repeat.
	headSize = 256
	// readChunk is the size of one read.
	readChunk = 256 << 10
	// maxRotatedFailures is how many reads in a row of a rotated-away file
	// may fail before it is closed, even within the rotation grace.
	maxRotatedFailures = 10
)

// fileID names a file independently of its path.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}

// tailFile is one open log file and how far it has been read. Offsets only
// move past complete lines: committed is just after the last newline
// handled, so a partial last line waits for its newline and a restart from
// committed neither skips nor repeats a line.
type tailFile struct {
	f         *os.File
	id        fileID
	committed int64 // after the last complete line handled
	readOff   int64 // next byte to read
	buf       []byte
	pending   int  // a partial line at buf[:pending], starting at committed
	skipping  bool // discarding the rest of a line longer than the limit
	window    [windowSize]byte
	windowLen int    // window[:windowLen] are the bytes just before committed
	headLen   int    // bytes of the file's start fingerprinted in headHash
	headHash  uint64 // FNV-1a of the first headLen bytes
	lastSize  int64  // file size at the last truncation check
	lastData  time.Time
	rotatedAt time.Time
	failures  int // reads that failed in a row
}

func openTail(path string, maxLine int) (*tailFile, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	return &tailFile{f: f, id: idOf(fi), buf: make([]byte, maxLine+1+readChunk)}, nil
}

// errNotRegular is the error for a log (or positions file) that is a FIFO,
// a directory or a device: reading one could wait forever for a writer or
// read something that is not a log.
var errNotRegular = errors.New("not a regular file")

// openRegular opens path for reading if it is a regular file. Opening never
// waits: O_NONBLOCK makes the open of a FIFO return at once instead of
// waiting for a writer (for a regular file it changes nothing), and the type
// is checked on the open file, so a FIFO put at the path after some earlier
// check is refused all the same.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkRegular(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// checkRegular returns errNotRegular, saying what path is, unless fi is a
// regular file.
func checkRegular(path string, fi os.FileInfo) error {
	if fi.Mode().IsRegular() {
		return nil
	}
	kind := "a special file"
	switch m := fi.Mode(); {
	case m.IsDir():
		kind = "a directory"
	case m&os.ModeNamedPipe != 0:
		kind = "a FIFO"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	case m&os.ModeDevice != 0:
		kind = "a device"
	}
	return fmt.Errorf("%s is %s: %w", path, kind, errNotRegular)
}

func (t *tailFile) close() { t.f.Close() }

// seek sets the position to offset, which must be the start of a line, and
// loads the window before it. It returns false, leaving the position at 0,
// when the file is shorter than offset, or the bytes before offset differ
// from window, or its first headLen bytes do not hash to headHash (the file
// was truncated and rewritten since). A nil window and a zero headLen skip
// those checks.
func (t *tailFile) seek(offset int64, window []byte, headLen int, headHash uint64) (bool, error) {
	t.reset()
	fi, err := t.f.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() < offset {
		return false, nil
	}
	n := min(int64(windowSize), offset)
	var w [windowSize]byte
	if _, err := t.f.ReadAt(w[:n], offset-n); err != nil {
		return false, err
	}
	if window != nil && !bytes.HasSuffix(w[:n], window) {
		return false, nil
	}
	if headLen > 0 {
		if int64(headLen) > offset {
			return false, nil
		}
		h, err := t.hashHead(headLen)
		if err != nil || h != headHash {
			return false, err
		}
	}
	t.committed, t.readOff = offset, offset
	t.windowLen = copy(t.window[:], w[:n])
	t.lastSize = fi.Size()
	return true, t.fingerprintHead()
}

// hashHead hashes the first n bytes of the file.
func (t *tailFile) hashHead(n int) (uint64, error) {
	var b [headSize]byte
	if _, err := t.f.ReadAt(b[:n], 0); err != nil {
		return 0, err
	}
	h := fnv.New64a()
	h.Write(b[:n])
	return h.Sum64(), nil
}

// fingerprintHead records the hash of the file's start, once lines up to
// headSize bytes have been read (only bytes before committed, which are
// known to be complete lines, count).
func (t *tailFile) fingerprintHead() error {
	n := int(min(int64(headSize), t.committed))
	if n <= t.headLen {
		return nil
	}
	h, err := t.hashHead(n)
	if err != nil {
		return err
	}
	t.headLen, t.headHash = n, h
	return nil
}

// reset goes back to the start of the file.
func (t *tailFile) reset() {
	t.committed, t.readOff, t.pending, t.skipping = 0, 0, 0, false
	t.windowLen, t.lastSize = 0, 0
	t.headLen, t.headHash = 0, 0
}

// hasPartial reports an unfinished line (or one being skipped).
func (t *tailFile) hasPartial() bool { return t.pending > 0 || t.skipping }

// truncated reports whether the file was truncated since it was last read
// (copytruncate): it is shorter than what was read, or the bytes before the
// position changed because it was rewritten past it in between.
func (t *tailFile) truncated() (bool, error) {
	fi, err := t.f.Stat()
	if err != nil {
		return false, err
	}
	size := fi.Size()
	if size < t.readOff {
		return true, nil
	}
	if size == t.lastSize || t.windowLen == 0 {
		t.lastSize = size
		return false, nil
	}
	t.lastSize = size
	var w [windowSize]byte
	if _, err := t.f.ReadAt(w[:t.windowLen], t.committed-int64(t.windowLen)); err != nil {
		return false, err
	}
	if !bytes.Equal(w[:t.windowLen], t.window[:t.windowLen]) {
		return true, nil
	}
	if t.headLen > 0 {
		h, err := t.hashHead(t.headLen)
		if err != nil {
			return false, err
		}
		return h != t.headHash, nil
	}
	return false, nil
}

// read hands every complete line available to p, until the end of the
// file or ctx ends. It reports whether it read anything.
func (t *tailFile) read(ctx context.Context, p *pipeline, maxLine int) (bool, error) {
	progress := false
	for ctx.Err() == nil {
		n, err := t.f.ReadAt(t.buf[t.pending:], t.readOff)
		if n > 0 {
			progress = true
			t.consume(n, p, maxLine)
		}
		if t.headLen < headSize {
			if err := t.fingerprintHead(); err != nil {
				return progress, err
			}
		}
		if errors.Is(err, io.EOF) {
			return progress, nil
		}
		if err != nil {
			return progress, err
		}
	}
	return progress, nil
}

// consume handles n bytes just read into buf after the pending ones.
func (t *tailFile) consume(n int, p *pipeline, maxLine int) {
	dataOff := t.readOff - int64(t.pending) // file offset of buf[0]
	t.readOff += int64(n)
	data := t.buf[:t.pending+n]
	start := 0
	contiguous := true // data[0] is at committed
	if t.skipping {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			t.pending = 0
			return
		}
		p.malformedLine()
		t.skipping = false
		contiguous = false
		start = i + 1
	}
	for {
		j := bytes.IndexByte(data[start:], '\n')
		if j < 0 {
			break
		}
		if j > maxLine {
			p.malformedLine()
		} else {
			p.line(data[start : start+j])
		}
		start += j + 1
	}
	if start > 0 {
		t.committed = dataOff + int64(start)
		t.updateWindow(data[:start], contiguous)
	}
	rest := data[start:]
	if len(rest) > maxLine {
		// Too long already: drop what is buffered and skip to the next
		// newline, so memory stays bounded whatever the line's length.
		t.skipping = true
		t.pending = 0
		return
	}
	copy(t.buf, rest)
	t.pending = len(rest)
}

// updateWindow records b, the bytes just before the new committed offset.
// When b directly follows the old window (contiguous), the two are joined.
func (t *tailFile) updateWindow(b []byte, contiguous bool) {
	if len(b) >= windowSize || !contiguous {
		n := min(len(b), windowSize)
		t.windowLen = copy(t.window[:], b[len(b)-n:])
		return
	}
	keep := min(t.windowLen, windowSize-len(b))
	copy(t.window[:], t.window[t.windowLen-keep:t.windowLen])
	copy(t.window[keep:], b)
	t.windowLen = keep + len(b)
}

// finish counts a line left unfinished in a file that will not grow again.
func (t *tailFile) finish(p *pipeline) {
	if t.hasPartial() {
		p.malformedLine()
		t.committed, t.pending, t.skipping = t.readOff, 0, false
	}
}

// currentName is where the open file is now, after a rename; "" when it was
// deleted or cannot be told.
func (t *tailFile) currentName() string {
	name, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(t.f.Fd())))
	if err != nil || strings.HasSuffix(name, " (deleted)") || !filepath.IsAbs(name) {
		return ""
	}
	return name
}

func (t *tailFile) entry(path string, rotated bool) positionEntry {
	e := positionEntry{
		Path:     path,
		Device:   t.id.dev,
		Inode:    t.id.ino,
		Offset:   t.committed,
		Window:   hex.EncodeToString(t.window[:t.windowLen]),
		HeadLen:  t.headLen,
		HeadHash: t.headHash,
		Rotated:  rotated,
	}
	if rotated {
		e.File = t.currentName()
	}
	return e
}

// follower follows one configured path like tail -F: it reads the file at
// the path, notices when another file takes its place (rename rotation) and
// keeps reading the old one until it stops growing, and starts over when
// the file is truncated in place (copytruncate).
type follower struct {
	spec   LogSpec
	cfg    *Config
	pipe   *pipeline
	store  *positionStore
	logger *slog.Logger
	now    func() time.Time

	readErrors prometheus.Counter
	renames    prometheus.Counter
	truncates  prometheus.Counter
	abandoned  prometheus.Counter

	cur       *tailFile
	rotated   []*tailFile
	published []positionEntry
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

func newFollower(spec LogSpec, e *Exporter, store *positionStore) *follower {
	return &follower{
		spec:       spec,
		cfg:        &e.cfg,
		pipe:       newPipeline(spec.Format, e.m, e.routes, &e.cfg, e.loki),
		store:      store,
		logger:     e.logger.With("log", spec.Path),
		now:        time.Now,
		readErrors: e.m.readErrors.WithLabelValues(spec.Path),
		renames:    e.m.rotations.WithLabelValues(spec.Path, "rename"),
		truncates:  e.m.rotations.WithLabelValues(spec.Path, "truncate"),
		abandoned:  e.m.abandoned.WithLabelValues(spec.Path),
	}
}

// run follows the path until ctx ends, then publishes its final positions.
func (f *follower) run(ctx context.Context, saved []positionEntry) {
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
		timer.Reset(f.cfg.PollInterval)
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
func (f *follower) restore(saved []positionEntry) {
	now := f.now()
	for _, e := range saved {
		id := fileID{dev: e.Device, ino: e.Inode}
		window, _ := hex.DecodeString(e.Window)
		var t *tailFile
		if !e.Rotated {
			if fi, err := os.Stat(f.spec.Path); err == nil && idOf(fi) == id {
				t = f.openAt(f.spec.Path, id)
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
	t, err := openTail(f.spec.Path, f.cfg.MaxLineBytes)
	if err != nil {
		if fi, serr := os.Stat(f.spec.Path); errors.Is(err, errNotRegular) && serr == nil {
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
	if len(saved) == 0 && !f.cfg.FromBeginning {
		if fi, err := t.f.Stat(); err == nil {
			if _, err := t.seek(fi.Size(), nil, 0, 0); err != nil {
				f.readError(err)
			}
		}
	}
	f.cur = t
}

func (f *follower) seekSaved(t *tailFile, e positionEntry, window []byte) {
	ok, err := t.seek(e.Offset, window, e.HeadLen, e.HeadHash)
	if err != nil {
		f.readError(err)
	}
	if !ok {
		f.truncates.Inc()
		f.logger.Info("log was truncated since the saved position; reading it from the start", "file", t.f.Name(), "offset", e.Offset)
	}
}

// openAt opens path and returns it only if it is the file id.
func (f *follower) openAt(path string, id fileID) *tailFile {
	t, err := openTail(path, f.cfg.MaxLineBytes)
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
func (f *follower) findRotated(e positionEntry, id fileID) *tailFile {
	if e.File != "" {
		if t := f.openAt(e.File, id); t != nil {
			return t
		}
	}
	dirs := []string{filepath.Dir(f.spec.Path)}
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
	fi, statErr := os.Stat(f.spec.Path)
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
			f.renames.Inc()
		} else {
			trunc, err := f.cur.truncated()
			if err != nil {
				f.readError(err)
			} else if trunc {
				f.cur.finish(f.pipe)
				f.cur.reset()
				f.truncates.Inc()
			}
			p, err := f.cur.read(ctx, f.pipe, f.cfg.MaxLineBytes)
			if err != nil {
				f.readError(err)
			}
			progress = progress || p
		}
	}
	f.rotated = slices.DeleteFunc(f.rotated, func(t *tailFile) bool {
		p, err := t.read(ctx, f.pipe, f.cfg.MaxLineBytes)
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
		if t.failures > 0 && (t.failures >= maxRotatedFailures || now.Sub(t.lastData) >= f.cfg.RotationGrace) {
			f.abandon(t, err)
			return true
		}
		if p || now.Sub(t.lastData) < f.cfg.RotationGrace {
			return false
		}
		t.finish(f.pipe)
		t.close()
		return true
	})
	if f.cur == nil && statErr == nil && !fi.Mode().IsRegular() {
		// Rotation put a FIFO or a directory at the path: refused, counted
		// and logged once per file, never opened (a FIFO's open would wait
		// for a writer).
		if r := refusedOf(fi); r != f.refused {
			f.refused = r
			f.readError(checkRegular(f.spec.Path, fi))
		}
	} else if f.cur == nil && statErr == nil {
		t, err := openTail(f.spec.Path, f.cfg.MaxLineBytes)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			f.readError(err)
		default:
			if f.waiting {
				f.logger.Info("log appeared")
			}
			f.cur = t
			p, err := t.read(ctx, f.pipe, f.cfg.MaxLineBytes)
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
	f.abandoned.Inc()
	f.logger.Warn("closing a rotated log that cannot be read; lines it has after the offset are lost",
		"file", t.f.Name(), "offset", t.committed, "failed_reads", t.failures, "err", err)
	t.close()
}

// readError counts an error and logs it when it differs from the last one,
// so a persistent problem is one log line, not one per poll.
func (f *follower) readError(err error) {
	f.readErrors.Inc()
	if msg := err.Error(); msg != f.lastErr {
		f.lastErr = msg
		f.logger.Error("cannot read log", "err", err)
	}
}

// publish hands the current positions to the store when they changed.
func (f *follower) publish() {
	var es []positionEntry
	if f.cur != nil {
		es = append(es, f.cur.entry(f.spec.Path, false))
	}
	for _, r := range f.rotated {
		es = append(es, r.entry(f.spec.Path, true))
	}
	if slices.Equal(es, f.published) {
		return
	}
	f.published = es
	f.store.set(f.spec.Path, es)
}
