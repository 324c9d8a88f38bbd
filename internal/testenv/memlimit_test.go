package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hog grows until something kills it: tail keeps all it reads of a file
// without a newline.
func startHog(t *testing.T, limit MemoryLimit) *Process {
	t.Helper()
	p, err := limit.StartProcess(t.TempDir(), "hog", "tail", "/dev/zero")
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		t.Fatal("the hog outgrew its limit and was not killed")
	}
	return p
}

// The kernel kills the hog in our own cgroup, counts it there, and the
// cgroup goes away afterwards. This machine allows one (CI's does); a
// machine that does not fails here, and the lab falls back to the
// supervisor there.
func TestMemoryCgroupKernelOOMKill(t *testing.T) {
	RequireLong(t)
	const limit = 32 << 20
	cg, err := NewMemoryCgroup("cascade-testenv-"+strconv.Itoa(os.Getpid()), limit)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cg.Remove() })
	require.Contains(t, cg.Describe(), "kernel")
	require.Equal(t, cg.Dir, cg.CgroupDir())

	p := startHog(t, cg)
	sig, ok := p.Signaled()
	require.True(t, ok)
	require.Equal(t, syscall.SIGKILL, sig)
	kills, err := cg.Kills()
	require.NoError(t, err)
	require.EqualValues(t, 1, kills, "the kernel counts its kill in the cgroup")

	// Raised and lowered again, in the order the kernel accepts.
	require.NoError(t, cg.SetLimit(4*limit))
	require.EqualValues(t, 4*limit, cg.Limit())
	require.NoError(t, cg.SetLimit(limit))
	require.Error(t, cg.SetLimit(0))

	require.NoError(t, cg.Remove())
	require.NoDirExists(t, cg.Dir)
}

func TestMemorySupervisorKillsAtTheLimit(t *testing.T) {
	const limit = 48 << 20
	s := NewMemorySupervisor(limit, "testing")
	require.Empty(t, s.CgroupDir())
	require.Contains(t, s.Describe(), "because testing")
	p := startHog(t, s)
	sig, ok := p.Signaled()
	require.True(t, ok)
	require.Equal(t, syscall.SIGKILL, sig)
	kills, err := s.Kills()
	require.NoError(t, err)
	require.EqualValues(t, 1, kills)
	log := s.KillLog()
	require.Len(t, log, 1)
	require.Equal(t, p.Pid(), log[0].Pid)
	require.GreaterOrEqual(t, log[0].RSS, int64(limit), "killed for reaching the limit, and the log says so")
	require.EqualValues(t, limit, log[0].Limit)
}

// A run killed before its cleanup leaves its cgroups behind; the next
// removes those whose owner is gone, and no other.
func TestRemoveStaleMemoryCgroups(t *testing.T) {
	RequireLong(t)
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	prefix := "cascade-testenv-stale-" + strconv.Itoa(os.Getpid())
	stale, err := NewMemoryCgroup(prefix+"-"+strconv.Itoa(dead.Process.Pid)+"-apiserver", 16<<20)
	require.NoError(t, err)
	live, err := NewMemoryCgroup(prefix+"-"+strconv.Itoa(os.Getpid())+"-apiserver", 16<<20)
	require.NoError(t, err)
	t.Cleanup(func() { _ = stale.Remove(); _ = live.Remove() })

	removed := RemoveStaleMemoryCgroups(prefix)
	require.Equal(t, []string{filepath.Base(stale.Dir)}, removed)
	require.NoDirExists(t, stale.Dir)
	require.DirExists(t, live.Dir)
}

func TestOwnMemoryCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in, path string
		v1, ok         bool
	}{
		{"v1 hybrid", "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n", "/process_api/abc", true, true},
		{"v1 joined controllers", "3:cpu,memory:/a/b\n", "/a/b", true, true},
		{"v2", "0::/user.slice/session-1.scope\n", "/user.slice/session-1.scope", false, true},
		{"none", "1:cpu:/\n", "", false, false},
		{"junk", "memory\n::\n4:memory:relative\n", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, v1, err := ownMemoryCgroup([]byte(tc.in))
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.path, path)
			require.Equal(t, tc.v1, v1)
		})
	}
}

func FuzzOwnMemoryCgroup(f *testing.F) {
	f.Add([]byte("4:memory:/process_api/abc\n0::/\n"))
	f.Add([]byte("0::/x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path, _, err := ownMemoryCgroup(b)
		if err == nil && !strings.HasPrefix(path, "/") {
			t.Fatalf("relative cgroup path %q", path)
		}
	})
}

func TestVmRSS(t *testing.T) {
	got, err := vmRSS(strings.NewReader("Name:\ttail\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n"))
	require.NoError(t, err)
	require.EqualValues(t, 1234*1024, got)
	for _, bad := range []string{"Name: x\n", "VmRSS: 12\n", "VmRSS: -1 kB\n", "VmRSS: 99999999999999999999 kB\n", "VmRSS: 1 MB\n"} {
		_, err := vmRSS(strings.NewReader(bad))
		require.Error(t, err, bad)
	}
	own, err := residentBytes(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, own)
}

func FuzzVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t1234 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := vmRSS(strings.NewReader(string(b))); err == nil && v < 0 {
			t.Fatalf("negative resident set %d", v)
		}
	})
}
