package procstat

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropFromPageCache: a file just written (its pages dirty) and read
// back is wholly resident; dropped, none of it is, by mincore(2).
func TestDropFromPageCache(t *testing.T) {
	// Not the test's temp dir: on tmpfs the page cache is the file itself
	// and nothing can be dropped. The repository's file system is the one
	// the benches' binaries are on.
	dir, err := os.MkdirTemp(".", "pagecache-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "file")
	const size = 4 << 20
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if got := residentPages(t, path); got != size/os.Getpagesize() {
		t.Fatalf("%d of %d pages resident after reading; the test cannot show a drop", got, size/os.Getpagesize())
	}
	if err := DropFromPageCache(path); err != nil {
		t.Fatal(err)
	}
	if got := residentPages(t, path); got != 0 {
		t.Errorf("%d of %d pages still resident after the drop", got, size/os.Getpagesize())
	}
}

func TestDropFromPageCacheMissingFile(t *testing.T) {
	if err := DropFromPageCache(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}

// residentPages maps the file and counts its pages in the page cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
