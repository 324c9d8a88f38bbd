package exepages

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/procfs"
	"github.com/stretchr/testify/require"
)

func TestReadOnlyMappings(t *testing.T) {
	perms := func(write bool) *procfs.ProcMapPermissions {
		return &procfs.ProcMapPermissions{Read: true, Write: write, Private: true}
	}
	maps := []*procfs.ProcMap{
		{StartAddr: 0x400000, EndAddr: 0x2458000, Perms: perms(false), Pathname: "/usr/bin/cascade"},
		{StartAddr: 0x2458000, EndAddr: 0x47d3000, Perms: perms(false), Pathname: "/usr/bin/cascade"},
		{StartAddr: 0x47d3000, EndAddr: 0x48a6000, Perms: perms(true), Pathname: "/usr/bin/cascade"},
		{StartAddr: 0x48a6000, EndAddr: 0x6909000, Perms: perms(true)},
		{StartAddr: 0x7f0000000000, EndAddr: 0x7f0000001000, Perms: perms(false), Pathname: "/usr/lib/libc.so.6"},
		{StartAddr: 0x7f0000001000, EndAddr: 0x7f0000002000, Perms: perms(false), Pathname: "/usr/bin/cascade-exporter"},
	}
	got := readOnlyMappings(maps, "/usr/bin/cascade")
	require.Equal(t, []*procfs.ProcMap{maps[0], maps[1]}, got)
}

// TestReleaseDropsResidentPages: after Release, the test binary holds
// fewer pages of files resident than before (its own executable's, paged
// out; nothing else maps them).
func TestReleaseDropsResidentPages(t *testing.T) {
	before := rssFileKiB(t)
	n, err := Release()
	require.NoError(t, err)
	require.Positive(t, n, "no mapping of the executable found")
	after := rssFileKiB(t)
	t.Logf("RssFile %d KiB → %d KiB (%d MiB of mappings advised)", before, after, n>>20)
	require.Less(t, after, before-1024, "RssFile %d KiB before, %d KiB after", before, after)
}

// TestReleaseMarksMappingsRandom: after Release, every read-only mapping of
// the executable carries the random-read advice ("rr" in smaps' VmFlags),
// so pages touched again are read one at a time, without read-ahead.
func TestReleaseMarksMappingsRandom(t *testing.T) {
	_, err := Release()
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	self, err := procfs.Self()
	require.NoError(t, err)
	maps, err := self.ProcMaps()
	require.NoError(t, err)
	// The mappings Release advises, by start address.
	advised := map[uint64]bool{}
	for _, m := range readOnlyMappings(maps, exe) {
		advised[uint64(m.StartAddr)] = true
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	checked := 0
	inAdvised := false
	for line := range strings.SplitSeq(string(smaps), "\n") {
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			if inAdvised {
				require.Contains(t, strings.Fields(flags), "rr", "a read-only mapping of %s without the random-read advice: %s", exe, flags)
				checked++
			}
			continue
		}
		// A mapping's header starts with its range in hex, "start-end";
		// the other lines of smaps start with a field name and a colon.
		if start, _, ok := strings.Cut(line, "-"); ok && !strings.Contains(start, ":") {
			addr, err := strconv.ParseUint(start, 16, 64)
			inAdvised = err == nil && advised[addr]
		}
	}
	require.Positive(t, checked, "no read-only mapping of %s in /proc/self/smaps", exe)
}

func rssFileKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
