package exepages

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release asks the kernel to reclaim the resident pages of the executable's
// read-only mappings (its code and read-only data) with MADV_PAGEOUT
// (Linux 5.4 and later). Clean file pages are dropped, not written
// anywhere; the ones the process touches again come back from the page
// cache or the file, once. Pages other processes also map stay. It returns
// the size of the mappings advised.
func Release() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ranges, err := readOnlyMappings(f, exe)
	if err != nil {
		return 0, err
	}
	var size int64
	for _, r := range ranges {
		// By address: the mapping is not Go memory, so no slice of it.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_PAGEOUT); errno != 0 {
			return size, fmt.Errorf("madvise(MADV_PAGEOUT) of %s at %#x: %w", exe, r.start, errno)
		}
		size += int64(r.end - r.start)
	}
	return size, nil
}

type mapping struct{ start, end uintptr }

// readOnlyMappings are the mappings of path without write permission in a
// /proc/PID/maps listing.
func readOnlyMappings(maps io.Reader, path string) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path || strings.Contains(fields[1], "w") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: bad address range %q", fields[0])
		}
		s, err := strconv.ParseUint(start, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps: %w", err)
		}
		e, err := strconv.ParseUint(end, 16, 64)
		if err != nil || e <= s {
			return nil, fmt.Errorf("maps: bad address range %q", fields[0])
		}
		out = append(out, mapping{uintptr(s), uintptr(e)})
	}
	return out, sc.Err()
}
