package tail

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// ErrNotRegular is the error for a followed file (or positions file) that
// is a FIFO, a directory or a device: reading one could wait forever for a
// writer or read something that is not a log.
var ErrNotRegular = errors.New("not a regular file")

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
		err = CheckRegular(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// CheckRegular returns ErrNotRegular, saying what path is, unless fi is a
// regular file.
func CheckRegular(path string, fi os.FileInfo) error {
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
	return fmt.Errorf("%s is %s: %w", path, kind, ErrNotRegular)
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

// read hands every complete line available to h, until the end of the
// file or ctx ends. It reports whether it read anything.
func (t *tailFile) read(ctx context.Context, h Handler, maxLine int) (bool, error) {
	progress := false
	for ctx.Err() == nil {
		n, err := t.f.ReadAt(t.buf[t.pending:], t.readOff)
		if n > 0 {
			progress = true
			t.consume(n, h, maxLine)
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
func (t *tailFile) consume(n int, h Handler, maxLine int) {
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
		h.Malformed()
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
			h.Malformed()
		} else {
			h.Line(data[start : start+j])
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
func (t *tailFile) finish(h Handler) {
	if t.hasPartial() {
		h.Malformed()
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

func (t *tailFile) entry(path string, rotated bool) Position {
	e := Position{
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
