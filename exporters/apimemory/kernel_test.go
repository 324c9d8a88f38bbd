package apimemory

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestKernelOOMKill has the kernel OOM-kill a process in a small cgroup
// made for it under the test's own, and checks that the kill is counted
// from the kernel's own files. It needs write access to the cgroup tree
// (root, v1, or v2 with the memory controller delegated), as CI has; it
// fails without it rather than pass unseen.
func TestKernelOOMKill(t *testing.T) {
	testenv.RequireLong(t) // starts a process that the kernel OOM-kills
	own, err := cgroupDirOfPID(DefaultProcRoot, DefaultCgroupRoot, os.Getpid())
	if err != nil {
		t.Fatalf("no memory cgroup of our own (run as root, or with the memory controller delegated): %v", err)
	}
	const limit = 32 << 20
	dir := filepath.Join(own, "cascade-oom-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("cannot make a cgroup (run as root, or with the memory controller delegated): %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	limitFile := "memory.max" // v2
	if _, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
		limitFile = "memory.limit_in_bytes" // v1
	}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatalf("cannot limit the cgroup's memory: %v", err)
	}

	// tail keeps all it reads of a file without a newline: it grows until
	// the kernel kills it.
	hog := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec tail /dev/zero`, "sh", dir)
	err = hog.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the hog should be killed, got %v", err)

	cfg := DefaultConfig()
	cfg.Cgroups = []CgroupSpec{{Replica: "hog", Dir: dir}}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	pollCgroups(e)
	oomKills, ok := sampleOf(t, e, "cascade_apiserver_oom_kills_total", "hog")
	require.True(t, ok)
	require.Equal(t, 1.0, oomKills)
	got, ok := sampleOf(t, e, "cascade_apiserver_memory_limit_bytes", "hog")
	require.True(t, ok)
	require.Equal(t, float64(limit), got)
	_, ok = sampleOf(t, e, "cascade_apiserver_memory_working_set_bytes", "hog")
	require.True(t, ok)
}
