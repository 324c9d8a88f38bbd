package exepages

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-02458000 r-xp 00000000 fd:01 123 /usr/bin/cascade
02458000-047d3000 r--p 02058000 fd:01 123 /usr/bin/cascade
047d3000-048a6000 rw-p 043d3000 fd:01 123 /usr/bin/cascade
048a6000-06909000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fd:01 456 /usr/lib/libc.so.6
7f0000001000-7f0000002000 r-xp 00000000 fd:01 789 /usr/bin/cascade-exporter
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	got, err := readOnlyMappings(strings.NewReader(maps), "/usr/bin/cascade")
	require.NoError(t, err)
	require.Equal(t, []mapping{{0x400000, 0x2458000}, {0x2458000, 0x47d3000}}, got)

	_, err = readOnlyMappings(strings.NewReader("zz-01 r-xp 0 0:0 1 /usr/bin/cascade\n"), "/usr/bin/cascade")
	require.Error(t, err)
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
