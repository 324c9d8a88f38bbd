package apimemory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// cgroupReading is what one read of a cgroup's memory files gives.
type cgroupReading struct {
	workingSet float64
	limit      float64 // 0: unlimited
	oomKills   float64
	// hasOOMKills is false on v1 kernels before 4.13, whose oom_control
	// has no oom_kill line, and when v2 memory.events is missing.
	hasOOMKills bool
}

// v1 writes "unlimited" as the largest page-aligned int64 (2^63 minus one
// page, so it depends on the page size). No real limit comes near 2^62
// bytes, so anything at or above it means unlimited.
const v1UnlimitedFrom = 1 << 62

// readCgroup reads the cgroup in dir, detecting v2 or v1 by its files. For
// v2 the effective limit is the smallest memory.max of dir and its ancestors
// below root; v1 gives that directly as hierarchical_memory_limit.
func readCgroup(dir, root string) (cgroupReading, error) {
	current, err := os.ReadFile(filepath.Join(dir, "memory.current"))
	if err == nil {
		stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
		if err != nil {
			return cgroupReading{}, err
		}
		events, err := readOptional(filepath.Join(dir, "memory.events"))
		if err != nil {
			return cgroupReading{}, err
		}
		var maxes [][]byte
		for _, d := range append([]string{dir}, ancestorsBelow(dir, root)...) {
			m, err := readOptional(filepath.Join(d, "memory.max"))
			if err != nil {
				return cgroupReading{}, err
			}
			if m != nil {
				maxes = append(maxes, m)
			}
		}
		return parseCgroupV2(current, stat, events, maxes...)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return cgroupReading{}, err
	}
	usage, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if errors.Is(err, fs.ErrNotExist) {
		return cgroupReading{}, fmt.Errorf("%s: neither memory.current (v2) nor memory.usage_in_bytes (v1): not a memory cgroup", dir)
	}
	if err != nil {
		return cgroupReading{}, err
	}
	limit, err := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes"))
	if err != nil {
		return cgroupReading{}, err
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return cgroupReading{}, err
	}
	oomControl, err := readOptional(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return cgroupReading{}, err
	}
	return parseCgroupV1(usage, limit, stat, oomControl)
}

// parseCgroupV2 turns the contents of memory.current, memory.stat,
// memory.events (nil if absent) and the memory.max files of the cgroup and
// its ancestors into a reading.
func parseCgroupV2(current, stat, events []byte, maxes ...[]byte) (cgroupReading, error) {
	usage, err := parseSingleValue(current)
	if err != nil {
		return cgroupReading{}, fmt.Errorf("memory.current: %w", err)
	}
	inactive, err := flatKeyedValue(stat, "inactive_file")
	if err != nil {
		return cgroupReading{}, fmt.Errorf("memory.stat: %w", err)
	}
	r := cgroupReading{workingSet: workingSet(usage, inactive)}
	effective := uint64(math.MaxUint64)
	for _, m := range maxes {
		if string(bytes.TrimSpace(m)) == "max" {
			continue
		}
		v, err := parseSingleValue(m)
		if err != nil {
			return cgroupReading{}, fmt.Errorf("memory.max: %w", err)
		}
		effective = min(effective, v)
	}
	if effective != math.MaxUint64 {
		r.limit = float64(effective)
	}
	if events != nil {
		if v, err := flatKeyedValue(events, "oom_kill"); err == nil {
			r.oomKills, r.hasOOMKills = float64(v), true
		} else if !errors.Is(err, errKeyMissing) {
			return cgroupReading{}, fmt.Errorf("memory.events: %w", err)
		}
	}
	return r, nil
}

// parseCgroupV1 turns the contents of memory.usage_in_bytes,
// memory.limit_in_bytes, memory.stat and memory.oom_control (nil if absent)
// into a reading.
func parseCgroupV1(usage, limit, stat, oomControl []byte) (cgroupReading, error) {
	used, err := parseSingleValue(usage)
	if err != nil {
		return cgroupReading{}, fmt.Errorf("memory.usage_in_bytes: %w", err)
	}
	lim, err := parseSingleValue(limit)
	if err != nil {
		return cgroupReading{}, fmt.Errorf("memory.limit_in_bytes: %w", err)
	}
	// total_* counts the cgroup and its children, which is what usage counts
	// too; old kernels without hierarchy accounting have only the plain key.
	inactive, err := flatKeyedValue(stat, "total_inactive_file")
	if errors.Is(err, errKeyMissing) {
		inactive, err = flatKeyedValue(stat, "inactive_file")
	}
	if err != nil {
		return cgroupReading{}, fmt.Errorf("memory.stat: %w", err)
	}
	if hier, err := flatKeyedValue(stat, "hierarchical_memory_limit"); err == nil {
		lim = min(lim, hier)
	} else if !errors.Is(err, errKeyMissing) {
		return cgroupReading{}, fmt.Errorf("memory.stat: %w", err)
	}
	r := cgroupReading{workingSet: workingSet(used, inactive)}
	if lim < v1UnlimitedFrom {
		r.limit = float64(lim)
	}
	if oomControl != nil {
		if v, err := flatKeyedValue(oomControl, "oom_kill"); err == nil {
			r.oomKills, r.hasOOMKills = float64(v), true
		} else if !errors.Is(err, errKeyMissing) {
			return cgroupReading{}, fmt.Errorf("memory.oom_control: %w", err)
		}
	}
	return r, nil
}

// workingSet is what the kubelet and cAdvisor call the working set: usage
// minus the page cache the kernel can drop first. The two files are read at
// slightly different moments, so inactive may exceed usage.
func workingSet(usage, inactiveFile uint64) float64 {
	if inactiveFile >= usage {
		return 0
	}
	return float64(usage - inactiveFile)
}

func parseSingleValue(b []byte) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a byte count", truncate(s))
	}
	return v, nil
}

var errKeyMissing = errors.New("key missing")

// flatKeyedValue finds "key value" in a flat-keyed cgroup file. Lines of
// other shapes are skipped: kernels add keys, and only ours must be sound.
func flatKeyedValue(b []byte, key string) (uint64, error) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if !ok || string(k) != key {
			continue
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: value %q is not a number", key, truncate(string(v)))
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: %w", key, errKeyMissing)
}

// cgroupDirOfPID finds the memory cgroup directory of a process from
// <procRoot>/PID/cgroup: the v1 memory controller's line if there is one
// (v1 or hybrid hosts), else the v2 "0::" line.
func cgroupDirOfPID(procRoot, cgroupRoot string, pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	v1, v2, err := parseProcCgroup(b)
	if err != nil {
		return "", fmt.Errorf("pid %d: %w", pid, err)
	}
	if v1 != "" {
		return filepath.Join(cgroupRoot, "memory", v1), nil
	}
	return filepath.Join(cgroupRoot, v2), nil
}

// parseProcCgroup reads /proc/PID/cgroup lines "ID:CONTROLLERS:PATH".
func parseProcCgroup(b []byte) (v1Memory, v2 string, err error) {
	for line := range strings.Lines(string(b)) {
		id, rest, ok1 := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		controllers, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(path, "/") {
			continue
		}
		if id == "0" && controllers == "" {
			v2 = path
			continue
		}
		for c := range strings.SplitSeq(controllers, ",") {
			if c == "memory" {
				v1Memory = path
			}
		}
	}
	if v1Memory == "" && v2 == "" {
		return "", "", errors.New("no memory cgroup in /proc/PID/cgroup")
	}
	return v1Memory, v2, nil
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// ancestorsBelow lists the parents of dir that are strictly inside root,
// nearest first; none when dir is not inside root.
func ancestorsBelow(dir, root string) []string {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil
	}
	var up []string
	for rel = filepath.Dir(rel); rel != "."; rel = filepath.Dir(rel) {
		up = append(up, filepath.Join(root, rel))
	}
	return up
}

func truncate(s string) string {
	const n = 40
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// cgroupSource reads one cgroup at every poll.
type cgroupSource struct {
	spec       CgroupSpec
	procRoot   string
	cgroupRoot string
	errors     prometheus.Counter
	logger     *slog.Logger

	mu       sync.Mutex
	last     cgroupReading
	ok       bool // last read succeeded: last is current
	failing  bool // logged as failing
	oomKills monotonicCounter
}

func newCgroupSource(spec CgroupSpec, cfg Config, errorCount prometheus.Counter, logger *slog.Logger) *cgroupSource {
	return &cgroupSource{
		spec:       spec,
		procRoot:   cfg.ProcRoot,
		cgroupRoot: cfg.CgroupRoot,
		errors:     errorCount,
		logger:     logger.With("source", kindCgroup, "replica", spec.Replica),
	}
}

func (s *cgroupSource) poll() {
	r, err := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors.Inc()
		if !s.failing {
			s.logger.Warn("cannot read cgroup, its values are absent until it can", "err", err)
		}
		s.ok, s.failing = false, true
		return
	}
	if s.failing {
		s.logger.Info("cgroup readable again")
	}
	s.last, s.ok, s.failing = r, true, false
	if r.hasOOMKills {
		s.oomKills.observe(r.oomKills)
	}
}

func (s *cgroupSource) read() (cgroupReading, error) {
	dir := s.spec.Dir
	if s.spec.PID != 0 {
		// Looked up every time: the process may have moved.
		var err error
		if dir, err = cgroupDirOfPID(s.procRoot, s.cgroupRoot, s.spec.PID); err != nil {
			return cgroupReading{}, err
		}
	}
	return readCgroup(dir, s.cgroupRoot)
}

func (s *cgroupSource) observation() observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var o observation
	if s.ok {
		o.workingSet = known(s.last.workingSet)
		if s.last.limit > 0 {
			o.limit = known(s.last.limit)
		}
	}
	if s.oomKills.seen {
		o.oomKills = known(s.oomKills.total)
	}
	return o
}
