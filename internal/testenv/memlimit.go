package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemoryLimit runs processes under a memory limit and kills them when they
// reach it, as a container runtime's memory limit does: the kernel's OOM
// killer in a memory cgroup of our own where the machine lets us make one
// (MemoryCgroup), otherwise a supervisor that kills with SIGKILL at the
// limit (MemorySupervisor). NewMemoryLimit picks.
type MemoryLimit interface {
	// StartProcess starts bin under the limit, as startProcess does.
	StartProcess(dir, name, bin string, args ...string) (*Process, error)
	// SetLimit changes the limit for what runs and what will run.
	SetLimit(bytes int64) error
	Limit() int64
	// Kills is how many processes were killed at the limit so far.
	Kills() (int64, error)
	// CgroupDir is the cgroup's directory, for cgroup readers such as the
	// memory exporter; empty for the supervisor.
	CgroupDir() string
	// Describe says what kills at the limit, and why that one.
	Describe() string
	// Remove removes what was made; call it after every process ended.
	Remove() error
}

// NewMemoryLimit makes a memory cgroup named name under this process's own
// and limits it; where that is refused, it returns a supervisor that says
// why in Describe.
func NewMemoryLimit(name string, limit int64) (MemoryLimit, error) {
	cg, err := NewMemoryCgroup(name, limit)
	if err == nil {
		return cg, nil
	}
	if !errors.Is(err, ErrNoMemoryCgroup) {
		return nil, err
	}
	return NewMemorySupervisor(limit, err.Error()), nil
}

// ErrNoMemoryCgroup means this machine does not let this process make a
// memory cgroup: no memory controller, no write access to our own cgroup,
// or (v2) the memory controller not delegated to our children.
var ErrNoMemoryCgroup = errors.New("no memory cgroup of our own")

// MemoryCgroup is a memory cgroup of our own making: a child of the memory
// cgroup this process runs in, with a limit, so that the kernel's OOM
// killer acts on what runs in it and on nothing else.
type MemoryCgroup struct {
	Dir string
	v1  bool

	mu    sync.Mutex
	limit int64
}

// cgroupRoot is where the cgroup file systems are mounted; the v1 memory
// hierarchy is under memory/, as the memory exporter expects by default.
const cgroupRoot = "/sys/fs/cgroup"

// NewMemoryCgroup makes the cgroup name under this process's memory cgroup
// and sets its limit (swap included where the kernel accounts it). An
// error wrapping ErrNoMemoryCgroup says the machine does not allow it.
func NewMemoryCgroup(name string, limit int64) (*MemoryCgroup, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("memory cgroup name %q: want one path element", name)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMemoryCgroup, err)
	}
	own, v1, err := ownMemoryCgroup(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMemoryCgroup, err)
	}
	parent := filepath.Join(cgroupRoot, own)
	if v1 {
		parent = filepath.Join(cgroupRoot, "memory", own)
	}
	if !v1 {
		// v2: our children get a memory controller only if our cgroup
		// delegates it; enabling it here fails while we are a member.
		ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
		if err != nil || !bytes.Contains(ctl, []byte("memory")) {
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
				return nil, fmt.Errorf("%w: the memory controller is not delegated to children of %s: %v", ErrNoMemoryCgroup, parent, err)
			}
		}
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoMemoryCgroup, err)
	}
	c := &MemoryCgroup{Dir: dir, v1: v1}
	if err := c.SetLimit(limit); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("%w: %v", ErrNoMemoryCgroup, err)
	}
	return c, nil
}

// ownMemoryCgroup finds this process's memory cgroup in the contents of
// /proc/self/cgroup: the v1 hierarchy holding the memory controller if
// there is one, else the v2 unified one.
func ownMemoryCgroup(procCgroup []byte) (path string, v1 bool, err error) {
	unified := ""
	for line := range bytes.Lines(procCgroup) {
		parts := strings.SplitN(strings.TrimSpace(string(line)), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			if ctl == "memory" {
				return parts[2], true, nil
			}
		}
	}
	if unified == "" {
		return "", false, errors.New("/proc/self/cgroup names no memory cgroup")
	}
	return unified, false, nil
}

func (c *MemoryCgroup) file(v1, v2 string) string {
	if c.v1 {
		return filepath.Join(c.Dir, v1)
	}
	return filepath.Join(c.Dir, v2)
}

// SetLimit sets the limit. Memory plus swap is kept at the same value where
// the kernel has it, so a process reaching the limit is killed rather than
// swapped out; the two are written in the order the kernel accepts.
func (c *MemoryCgroup) SetLimit(limit int64) error {
	if limit <= 0 {
		return fmt.Errorf("memory limit %d: want a positive byte count", limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	value := []byte(strconv.FormatInt(limit, 10))
	mem := c.file("memory.limit_in_bytes", "memory.max")
	writeSwap := func() error {
		if c.v1 {
			err := os.WriteFile(filepath.Join(c.Dir, "memory.memsw.limit_in_bytes"), value, 0o644)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // no swap accounting
			}
			return err
		}
		err := os.WriteFile(filepath.Join(c.Dir, "memory.swap.max"), []byte("0"), 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var err error
	if limit > c.limit && c.limit > 0 {
		err = errors.Join(writeSwap(), os.WriteFile(mem, value, 0o644))
	} else {
		err = os.WriteFile(mem, value, 0o644)
		if err == nil {
			err = writeSwap()
		}
	}
	if err != nil {
		return fmt.Errorf("limit memory of %s: %w", c.Dir, err)
	}
	c.limit = limit
	return nil
}

// Limit is the limit last set.
func (c *MemoryCgroup) Limit() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

// Kills is the kernel's count of OOM kills in the cgroup.
func (c *MemoryCgroup) Kills() (int64, error) {
	b, err := os.ReadFile(c.file("memory.oom_control", "memory.events"))
	if err != nil {
		return 0, err
	}
	v, ok := flatKeyed(b, "oom_kill")
	if !ok {
		return 0, fmt.Errorf("%s: no oom_kill count (kernel before 4.13?)", c.Dir)
	}
	return v, nil
}

// Usage is the cgroup's memory use in bytes, page cache included.
func (c *MemoryCgroup) Usage() (int64, error) {
	b, err := os.ReadFile(c.file("memory.usage_in_bytes", "memory.current"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// CgroupDir is the cgroup's directory.
func (c *MemoryCgroup) CgroupDir() string { return c.Dir }

// Describe says that the kernel kills, and where.
func (c *MemoryCgroup) Describe() string {
	v := "v2"
	if c.v1 {
		v = "v1"
	}
	return fmt.Sprintf("the kernel's OOM killer, in the memory cgroup %s (%s) made for it", c.Dir, v)
}

// StartProcess starts bin inside the cgroup from its first instruction: a
// shell joins the cgroup, then executes bin in its place (same pid).
func (c *MemoryCgroup) StartProcess(dir, name, bin string, args ...string) (*Process, error) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, err
	}
	return startProcess(dir, name, sh, append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(c.Dir, "cgroup.procs"), bin}, args...)...)
}

// Remove removes the cgroup. The kernel refuses while a process is in it,
// and may take a moment after the last one ended.
func (c *MemoryCgroup) Remove() error {
	var err error
	for range 50 {
		if err = os.Remove(c.Dir); err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove memory cgroup: %w", err)
}

// RemoveStaleMemoryCgroups removes the empty cgroups under this process's
// memory cgroup whose names start with prefix+"-PID-" for a PID that no
// longer runs: what a run killed before it could clean up left behind.
func RemoveStaleMemoryCgroups(prefix string) []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	own, v1, err := ownMemoryCgroup(b)
	if err != nil {
		return nil
	}
	parent := filepath.Join(cgroupRoot, own)
	if v1 {
		parent = filepath.Join(cgroupRoot, "memory", own)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its owner still runs
		}
		if os.Remove(filepath.Join(parent, e.Name())) == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed
}

// flatKeyed finds "key value" in a flat-keyed kernel file.
func flatKeyed(b []byte, key string) (int64, bool) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if !ok || string(k) != key {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// MemorySupervisor stands in for the OOM killer where no memory cgroup can
// be made: it reads the resident set of each process it started every
// 50 ms and kills it with SIGKILL when it reaches the limit, recording why.
// It is coarser than the kernel (a fast allocation can overshoot between
// two reads), and a memory exporter sees its kills only as restarts.
type MemorySupervisor struct {
	why string

	mu    sync.Mutex
	limit int64
	kills []SupervisorKill
}

// SupervisorKill is one kill and why.
type SupervisorKill struct {
	Time       time.Time
	Name       string
	Pid        int
	RSS, Limit int64
}

// NewMemorySupervisor kills at limit; why says why no cgroup is used.
func NewMemorySupervisor(limit int64, why string) *MemorySupervisor {
	return &MemorySupervisor{limit: limit, why: why}
}

// StartProcess starts bin and watches its resident set until it ends.
func (s *MemorySupervisor) StartProcess(dir, name, bin string, args ...string) (*Process, error) {
	p, err := startProcess(dir, name, bin, args...)
	if err != nil {
		return nil, err
	}
	go s.watch(p)
	return p, nil
}

func (s *MemorySupervisor) watch(p *Process) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.Done():
			return
		case <-tick.C:
		}
		rss, err := residentBytes(p.Pid())
		if err != nil {
			continue // ended between the tick and the read
		}
		limit := s.Limit()
		if rss < limit {
			continue
		}
		s.mu.Lock()
		s.kills = append(s.kills, SupervisorKill{Time: time.Now(), Name: p.Name, Pid: p.Pid(), RSS: rss, Limit: limit})
		s.mu.Unlock()
		p.Kill()
		return
	}
}

// residentBytes reads VmRSS of pid from /proc.
func residentBytes(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return vmRSS(f)
}

// vmRSS finds "VmRSS:  N kB" in a /proc/PID/status.
func vmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<53/1024 {
			return 0, fmt.Errorf("VmRSS line %q", sc.Text())
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS (a kernel thread, or a process that ended)")
}

// SetLimit changes the limit.
func (s *MemorySupervisor) SetLimit(limit int64) error {
	if limit <= 0 {
		return fmt.Errorf("memory limit %d: want a positive byte count", limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = limit
	return nil
}

// Limit is the current limit.
func (s *MemorySupervisor) Limit() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// Kills is how many processes the supervisor killed.
func (s *MemorySupervisor) Kills() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.kills)), nil
}

// KillLog is every kill with the resident set that caused it.
func (s *MemorySupervisor) KillLog() []SupervisorKill {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SupervisorKill(nil), s.kills...)
}

// CgroupDir is empty: there is no cgroup.
func (s *MemorySupervisor) CgroupDir() string { return "" }

// Describe says that a supervisor kills, and why no cgroup is used.
func (s *MemorySupervisor) Describe() string {
	return "a supervisor that kills with SIGKILL when the resident set reaches the limit (read every 50 ms), because " + s.why
}

// Remove does nothing: the supervisor made nothing on the machine.
func (s *MemorySupervisor) Remove() error { return nil }
