package apimemory

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	v2PodCgroup = "cgroupv2/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5f0c8a3e_9b2d_4c11_a7e4_2d1f6b0c9e71.slice/cri-containerd-7d3b9f2a6c1e.scope"
	v2SvcCgroup = "cgroupv2/system.slice/kube-apiserver.service"
	v1PodCgroup = "cgroupv1/memory/kubepods/burstable/pod5f0c8a3e-9b2d-4c11-a7e4-2d1f6b0c9e71/7d3b9f2a6c1e"
	v1SvcCgroup = "cgroupv1/memory/system.slice/kube-apiserver.service"
)

func testdata(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", rel))
	require.NoError(t, err)
	return p
}

func pollCgroups(e *Exporter) {
	for _, s := range e.cgroups {
		s.poll()
	}
}

func TestCgroupFixtures(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CgroupRoot = testdata(t, "cgroupv2")
	cfg.Cgroups = []CgroupSpec{
		{Replica: "v2-pod", Dir: testdata(t, v2PodCgroup)},
		{Replica: "v2-service", Dir: testdata(t, v2SvcCgroup)},
		// Outside CgroupRoot: only the cgroup's own limits count.
		{Replica: "v1-pod", Dir: testdata(t, v1PodCgroup)},
		{Replica: "v1-service", Dir: testdata(t, v1SvcCgroup)},
	}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)

	requireMetrics(t, e, "", memoryMetrics...) // nothing before the first poll
	pollCgroups(e)

	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="v2-pod"} 1410859008
cascade_apiserver_memory_working_set_bytes{replica="v2-service"} 629145600
cascade_apiserver_memory_working_set_bytes{replica="v1-pod"} 1127428096
cascade_apiserver_memory_working_set_bytes{replica="v1-service"} 471859200
cascade_apiserver_memory_limit_bytes{replica="v2-pod"} 2147483648
cascade_apiserver_memory_limit_bytes{replica="v1-pod"} 2147483648
cascade_apiserver_memory_limit_bytes{replica="v1-service"} 1073741824
cascade_apiserver_oom_kills_total{replica="v2-pod"} 1
cascade_apiserver_oom_kills_total{replica="v2-service"} 0
cascade_apiserver_oom_kills_total{replica="v1-pod"} 3
cascade_apiserver_source_errors_total{source="cgroup"} 0
`, append(memoryMetrics, "cascade_apiserver_source_errors_total")...)
	requireLintClean(t, e)
}

func TestCgroupByPID(t *testing.T) {
	for _, tc := range []struct {
		name, root, want string
		pid              int
	}{
		{"v2", "cgroupv2", `
cascade_apiserver_memory_working_set_bytes{replica="apiserver"} 629145600
cascade_apiserver_oom_kills_total{replica="apiserver"} 0
`, 4242},
		{"v1", "cgroupv1", `
cascade_apiserver_memory_working_set_bytes{replica="apiserver"} 1127428096
cascade_apiserver_memory_limit_bytes{replica="apiserver"} 2147483648
cascade_apiserver_oom_kills_total{replica="apiserver"} 3
`, 4343},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ProcRoot = testdata(t, "proc")
			cfg.CgroupRoot = testdata(t, tc.root)
			cfg.Cgroups = []CgroupSpec{{Replica: "apiserver", PID: tc.pid}}
			e, err := New(cfg, nil, nil)
			require.NoError(t, err)
			pollCgroups(e)
			requireMetrics(t, e, tc.want)
		})
	}
}

func TestCgroupGoneAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kube-apiserver.service")
	copyDir(t, testdata(t, v1PodCgroup), dir)
	cfg := DefaultConfig()
	cfg.Cgroups = []CgroupSpec{{Replica: "a", Dir: dir}}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	pollCgroups(e)
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="a"} 1127428096
cascade_apiserver_memory_limit_bytes{replica="a"} 2147483648
cascade_apiserver_oom_kills_total{replica="a"} 3
`)

	// The process died and its cgroup went with it: no value is current
	// any more, but the OOM kills counted stay.
	require.NoError(t, os.RemoveAll(dir))
	pollCgroups(e)
	requireMetrics(t, e, `
cascade_apiserver_oom_kills_total{replica="a"} 3
cascade_apiserver_source_errors_total{source="cgroup"} 1
`, append(memoryMetrics, "cascade_apiserver_source_errors_total")...)

	// Recreated, its oom_kill counter starts again from zero; one more kill
	// must show as one more, not as a fall from 3 to 1.
	copyDir(t, testdata(t, v1PodCgroup), dir)
	writeFile(t, filepath.Join(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	writeFile(t, filepath.Join(dir, "memory.usage_in_bytes"), "300000000\n")
	pollCgroups(e)
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="a"} 31564544
cascade_apiserver_memory_limit_bytes{replica="a"} 2147483648
cascade_apiserver_oom_kills_total{replica="a"} 4
`)
}

func TestParseCgroupV2(t *testing.T) {
	stat := []byte("anon 100\nfile 50\ninactive_file 30\nactive_file 20\n")
	events := []byte("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n")
	for _, tc := range []struct {
		name                 string
		current, stat, event []byte
		maxes                [][]byte
		want                 cgroupReading
		wantErr              string
	}{
		{name: "limited", current: []byte("130\n"), stat: stat, event: events, maxes: [][]byte{[]byte("max\n"), []byte("4096\n"), []byte("8192\n")},
			want: cgroupReading{workingSet: 100, limit: 4096, oomKills: 2, hasOOMKills: true}},
		{name: "unlimited", current: []byte("130\n"), stat: stat, event: events, maxes: [][]byte{[]byte("max\n")},
			want: cgroupReading{workingSet: 100, oomKills: 2, hasOOMKills: true}},
		{name: "no events file", current: []byte("130\n"), stat: stat,
			want: cgroupReading{workingSet: 100}},
		{name: "events without oom_kill", current: []byte("130\n"), stat: stat, event: []byte("low 0\nhigh 0\nmax 0\noom 0\n"),
			want: cgroupReading{workingSet: 100}},
		{name: "inactive above usage", current: []byte("10\n"), stat: stat,
			want: cgroupReading{workingSet: 0}},
		{name: "empty current", current: []byte(""), stat: stat, wantErr: "memory.current"},
		{name: "negative current", current: []byte("-1\n"), stat: stat, wantErr: "memory.current"},
		{name: "no inactive_file", current: []byte("130\n"), stat: []byte("anon 100\n"), wantErr: "inactive_file: key missing"},
		{name: "garbage inactive_file", current: []byte("130\n"), stat: []byte("inactive_file lots\n"), wantErr: "inactive_file"},
		{name: "garbage max", current: []byte("130\n"), stat: stat, maxes: [][]byte{[]byte("unlimited\n")}, wantErr: "memory.max"},
		{name: "garbage oom_kill", current: []byte("130\n"), stat: stat, event: []byte("oom_kill x\n"), wantErr: "memory.events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCgroupV2(tc.current, tc.stat, tc.event, tc.maxes...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseCgroupV1(t *testing.T) {
	modern := []byte("cache 40\nrss 100\ninactive_file 5\nhierarchical_memory_limit 9223372036854771712\ntotal_inactive_file 30\n")
	old := []byte("cache 40\nrss 100\ninactive_file 30\n")
	oom := []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
	for _, tc := range []struct {
		name                           string
		usage, limit, stat, oomControl []byte
		want                           cgroupReading
		wantErr                        string
	}{
		{name: "unlimited 4k pages", usage: []byte("130\n"), limit: []byte("9223372036854771712\n"), stat: modern, oomControl: oom,
			want: cgroupReading{workingSet: 100, oomKills: 7, hasOOMKills: true}},
		{name: "unlimited 64k pages", usage: []byte("130\n"), limit: []byte("9223372036854710272\n"), stat: modern, oomControl: oom,
			want: cgroupReading{workingSet: 100, oomKills: 7, hasOOMKills: true}},
		{name: "limited", usage: []byte("130\n"), limit: []byte("1048576\n"), stat: modern,
			want: cgroupReading{workingSet: 100, limit: 1048576}},
		{name: "parent limit", usage: []byte("130\n"), limit: []byte("9223372036854771712\n"),
			stat: []byte("hierarchical_memory_limit 4096\ntotal_inactive_file 30\n"),
			want: cgroupReading{workingSet: 100, limit: 4096}},
		{name: "no total_ keys", usage: []byte("130\n"), limit: []byte("1048576\n"), stat: old,
			want: cgroupReading{workingSet: 100, limit: 1048576}},
		{name: "kernel before 4.13", usage: []byte("130\n"), limit: []byte("1048576\n"), stat: old, oomControl: []byte("oom_kill_disable 0\nunder_oom 1\n"),
			want: cgroupReading{workingSet: 100, limit: 1048576}},
		{name: "garbage usage", usage: []byte("lots\n"), limit: []byte("1\n"), stat: old, wantErr: "memory.usage_in_bytes"},
		{name: "garbage limit", usage: []byte("1\n"), limit: []byte("-1\n"), stat: old, wantErr: "memory.limit_in_bytes"},
		{name: "no inactive", usage: []byte("1\n"), limit: []byte("1\n"), stat: []byte("cache 1\n"), wantErr: "memory.stat"},
		{name: "garbage oom_kill", usage: []byte("1\n"), limit: []byte("1\n"), stat: old, oomControl: []byte("oom_kill -\n"), wantErr: "memory.oom_control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCgroupV1(tc.usage, tc.limit, tc.stat, tc.oomControl)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantV1, wantV2, wantErr string
	}{
		{name: "v2", in: "0::/system.slice/kube-apiserver.service\n", wantV2: "/system.slice/kube-apiserver.service"},
		{name: "hybrid", in: "5:cpu,cpuacct:/a\n4:memory:/kubepods/x\n1:name=systemd:/a\n0::/a\n", wantV1: "/kubepods/x", wantV2: "/a"},
		{name: "co-mounted", in: "3:cpu,memory:/m\n", wantV1: "/m"},
		{name: "no memory", in: "3:cpu:/m\n", wantErr: "no memory cgroup"},
		{name: "garbage", in: "hello\n::\n", wantErr: "no memory cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v1, v2, err := parseProcCgroup([]byte(tc.in))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantV1, v1)
			require.Equal(t, tc.wantV2, v2)
		})
	}
}

func TestAncestorsBelow(t *testing.T) {
	require.Equal(t, []string{"/r/a/b", "/r/a"}, ancestorsBelow("/r/a/b/c", "/r"))
	require.Empty(t, ancestorsBelow("/r/a", "/r"))
	require.Empty(t, ancestorsBelow("/r", "/r"))
	require.Empty(t, ancestorsBelow("/elsewhere/a/b", "/r"))
	require.Empty(t, ancestorsBelow("/", "/"))
}

func TestMonotonicCounter(t *testing.T) {
	var c monotonicCounter
	for _, step := range []struct{ raw, want float64 }{
		{2, 2}, {2, 2}, {5, 5}, {0, 5}, {1, 6}, {1, 6}, {3, 8},
	} {
		c.observe(step.raw)
		require.Equal(t, step.want, c.total, "after reading %v", step.raw)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	require.NoError(t, os.CopyFS(to, os.DirFS(from)))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// A source that keeps failing is counted at every poll but logged once.
func TestCgroupFailureLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	dir := filepath.Join(t.TempDir(), "apiserver")
	cfg := DefaultConfig()
	cfg.Cgroups = []CgroupSpec{{Replica: "a", Dir: dir}}
	e, err := New(cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	for range 3 {
		pollCgroups(e)
	}
	copyDir(t, testdata(t, v2SvcCgroup), dir)
	pollCgroups(e)
	pollCgroups(e)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, logs.String())
	require.Contains(t, lines[0], "level=WARN")
	require.Contains(t, lines[0], "not a memory cgroup")
	require.Contains(t, lines[1], "level=INFO")
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="a"} 629145600
cascade_apiserver_oom_kills_total{replica="a"} 0
cascade_apiserver_source_errors_total{source="cgroup"} 3
`, append(memoryMetrics, "cascade_apiserver_source_errors_total")...)
}
