package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteNewAndReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	require.NoError(t, WriteFile(path, []byte("one"), 0o600))
	requireFile(t, path, "one", 0o600)
	require.NoError(t, WriteFile(path, []byte("two"), 0o644))
	requireFile(t, path, "two", 0o644)
	requireOnly(t, dir, "out.txt")
}

func TestFailedWriteLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	require.NoError(t, WriteFile(path, []byte("old"), 0o644))
	boom := errors.New("boom")
	err := Write(path, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("half of the ne"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, path)
	requireFile(t, path, "old", 0o644)
	requireOnly(t, dir, "out.txt")
}

func TestSymlinkIsKeptAndItsTargetReplaced(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target.txt")
	link := filepath.Join(dir, "link.txt")
	require.NoError(t, os.WriteFile(target, []byte("old"), 0o644))
	require.NoError(t, os.Symlink(target, link))
	require.NoError(t, WriteFile(link, []byte("new"), 0o644))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.Equal(t, os.ModeSymlink, fi.Mode().Type(), "the link must stay a link")
	requireFile(t, target, "new", 0o644)
}

func TestDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(dir, []byte("x"), 0o644)
	require.ErrorContains(t, err, "is a directory")
}

func TestMissingDirectoryIsAnError(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "no", "such", "dir", "f"), []byte("x"), 0o644)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// A FIFO is written through: the reader gets the bytes and the FIFO stays.
func TestFIFOIsWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	got := make(chan string, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- "open: " + err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- string(b)
	}()
	require.NoError(t, WriteFile(fifo, []byte("through the pipe"), 0o644))
	require.Equal(t, "through the pipe", <-got)
	fi, err := os.Lstat(fifo)
	require.NoError(t, err)
	require.Equal(t, os.ModeNamedPipe, fi.Mode().Type(), "the FIFO must not be replaced by a regular file")
	requireOnly(t, dir, "pipe")
}

// A character device is written through and stays a device. As root (how
// CI runs) it is a null device of the test's own, never the machine's
// /dev/null, which a broken writer could replace; without root, when
// making a device node is not allowed, the machine's /dev/null, which such
// a user cannot replace.
func TestCharDeviceIsWrittenThrough(t *testing.T) {
	dir, name := "/dev", "null"
	if os.Geteuid() == 0 {
		dir = t.TempDir()
		if err := syscall.Mknod(filepath.Join(dir, name), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatalf("mknod a null device in %s: %v", dir, err)
		}
	}
	null := filepath.Join(dir, name)
	require.NoError(t, WriteFile(null, []byte("discarded"), 0o644))
	fi, err := os.Lstat(null)
	require.NoError(t, err)
	require.Equal(t, os.ModeDevice|os.ModeCharDevice, fi.Mode().Type(), "the device must not be replaced by a regular file")
	if os.Geteuid() == 0 {
		requireOnly(t, dir, name)
	}
}

func requireFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, content, string(b))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, perm, fi.Mode().Perm())
}

func requireOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	require.ElementsMatch(t, names, got, "no temporary file may be left behind")
}
