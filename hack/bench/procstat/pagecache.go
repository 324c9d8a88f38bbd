package procstat

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DropFromPageCache has the kernel forget the cached pages of the file at
// path, as on a machine that never read it, so that a process started from
// it afterwards reads its executable from disk. Resident memory depends on
// that state: the same `cascade run` held 27 MiB of its executable just
// after the linker wrote it and 15 MiB started from disk, which moved its
// ratio to Prometheus's by 0.15. A bench that drops every server's
// executable before starting it measures them all in the state a new pod
// starts in, whatever ran or was built before.
//
// Dirty pages (a binary just written) are written out first: the kernel
// drops only clean ones. Pages mapped by a running process stay.
func DropFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}
