package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
	"github.com/cascade-sre/cascade/internal/testenv"
)

func TestSamples(t *testing.T) {
	body := []byte(`# HELP a_total A.
# TYPE a_total counter
a_total{x="1",y="b c"} 3
b 1.5e+09
c{} 2 1700000000000
# EOF
`)
	var got []sample
	for s := range samples(body) {
		got = append(got, s)
	}
	want := []sample{{"a_total", `x="1",y="b c"`, 3}, {"b", "", 1.5e9}, {"c", "", 2}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestPercentile(t *testing.T) {
	w := window{}
	for i := 100; i >= 1; i-- {
		w.latencies = append(w.latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := w.percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
}

func TestProcOfSelf(t *testing.T) {
	m, err := procstat.ReadMem(os.Getpid())
	if err != nil || m.RSS == 0 || m.HWM < m.RSS {
		t.Fatalf("ReadMem = %+v, %v", m, err)
	}
	if _, err := procstat.CPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestFloorServesTheExporterSeries(t *testing.T) {
	mfs, err := floorRegistry(10).Gather()
	if err != nil {
		t.Fatal(err)
	}
	perNode := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "cascade_node_lease_") && len(mf.GetMetric()) == 10 {
			perNode++
		}
	}
	if perNode != 2 {
		t.Errorf("%d per-node families with 10 series, want 2", perNode)
	}
}

// TestReportShowsPublishedPeer: without a measured peer at 5,000 nodes the
// published figures are shown, labelled, and the CPU goal is checked
// against them.
func TestReportShowsPublishedPeer(t *testing.T) {
	win := func(p50 time.Duration, rss uint64, cpu float64) window {
		return window{latencies: []time.Duration{p50}, seriesMin: 10058, seriesMax: 10058, rssPeak: rss, rssLast: rss, hwm: rss, cpuPercent: cpu}
	}
	res := []sizeResult{{nodes: 5000, targets: []targetResult{
		{name: targetCascade, window: win(5*time.Millisecond, 40<<20, 2)},
		{name: targetFloor, window: win(4*time.Millisecond, 30<<20, 1)},
	}}}
	var b strings.Builder
	printReport(&b, machine{cpus: 2, model: "test"}, options{duration: time.Minute, interval: time.Second}, res)
	out := b.String()
	for _, want := range []string{
		"kube-state-metrics (published)",
		"PASS  p99 latency below 10 ms: 5.00 ms",
		"PASS  RSS below 50 MiB",
		"PASS  CPU below the peer: 2.0% of a core vs 3.6% (kube-state-metrics, published, not measured here)",
		"PASS  within 2x of the floor: p99 1.25x",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestReportGivesRatiosToThePeers: issue 15's ratios, cascade's to
// kube-state-metrics' and cascade-gzip's to kube-state-metrics-gzip's, from
// the same rounds.
func TestReportGivesRatiosToThePeers(t *testing.T) {
	win := func(p50 time.Duration, rss uint64, cpu float64) window {
		return window{latencies: []time.Duration{p50}, rssPeak: rss, rssLast: rss, hwm: rss + 1<<20, cpuPercent: cpu}
	}
	res := []sizeResult{{nodes: 1000, targets: []targetResult{
		{name: targetCascade, window: win(2*time.Millisecond, 20<<20, 1)},
		{name: targetCascadeGzip, window: win(3*time.Millisecond, 25<<20, 2)},
		{name: targetPeer, window: win(4*time.Millisecond, 40<<20, 4)},
		{name: targetPeerGzip, window: win(12*time.Millisecond, 50<<20, 5)},
	}}}
	var b strings.Builder
	printPeerRatios(&b, res)
	for _, want := range []string{
		"size 1000: cascade to kube-state-metrics: RSS 0.50x, p99 0.50x, p50 0.50x, CPU 0.25x; " +
			"lifetime peak 21.0 MiB against 20.0 in the window\n",
		"size 1000: cascade-gzip to kube-state-metrics-gzip: RSS 0.50x, p99 0.25x, p50 0.25x, CPU 0.40x; " +
			"lifetime peak 26.0 MiB against 25.0 in the window\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("got %q, want it to hold %q", b.String(), want)
		}
	}
}

// TestBenchTargetsListenOnLoopbackOnly: the floor and the static target
// refuse any other address, and the static body is one series.
func TestBenchTargetsListenOnLoopbackOnly(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0", "10.0.0.1:0", "nohost"} {
		if err := serveLoopback(listen, http.NotFoundHandler()); err == nil {
			t.Fatalf("%s: served", listen)
		}
	}
	if n := countSeries([]byte(staticBody)); n != 1 {
		t.Fatalf("static body: %d series", n)
	}
}

// TestLowerSetsEveryThread: a Go child's threads (several, started before)
// all end at the nice value given, or under SCHED_IDLE.
func TestLowerSetsEveryThread(t *testing.T) {
	for _, prio := range []fleetPriority{{nice: 7}, {idle: true}} {
		t.Run(prio.String(), func(t *testing.T) {
			pid := sleepingChild(t)
			n, err := prio.lower(pid)
			if err != nil {
				t.Fatal(err)
			}
			if n < 2 {
				t.Errorf("set %d threads, want every one of at least 2", n)
			}
			requireThreadsAt(t, pid, prio)
		})
	}
}

// sleepingChild starts the test binary as a process that waits, and
// returns its pid once it runs two threads or more.
func sleepingChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "CASCADE_BENCH_SLEEP=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	var threads int
	for deadline := time.Now().Add(10 * time.Second); threads < 2; time.Sleep(10 * time.Millisecond) {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		threads = len(tasks)
		if time.Now().After(deadline) {
			t.Fatalf("child has %d threads", threads)
		}
	}
	return pid
}

// requireThreadsAt checks that every thread of process pid runs at the
// priority want; a thread that ends meanwhile is passed over.
func requireThreadsAt(t *testing.T, pid int, want fleetPriority) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		attr, err := unix.SchedGetAttr(tid, 0)
		if err == syscall.ESRCH {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if want.idle {
			if attr.Policy != unix.SCHED_IDLE {
				t.Errorf("thread %d of %d: policy %d, want SCHED_IDLE (%d)", tid, pid, attr.Policy, unix.SCHED_IDLE)
			}
			continue
		}
		if attr.Policy != unix.SCHED_NORMAL || int(int32(attr.Nice)) != want.nice {
			t.Errorf("thread %d of %d: policy %d, nice %d, want SCHED_NORMAL at nice %d", tid, pid, attr.Policy, int32(attr.Nice), want.nice)
		}
	}
}

// TestRenewerProcessRenewsEveryLease: the renewer child renews each lease
// of a real control plane once a period, at the priority given, reports
// what it did to the parent and stops on SIGTERM.
func TestRenewerProcessRenewsEveryLease(t *testing.T) {
	cp, err := testenv.StartControlPlane(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	client, err := newClient(cp)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	if err := createFleet(t.Context(), client, n); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r, err := startRenewerProcess(os.Args[0], kubeconfig, 4, fleetPriority{idle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()

	// One period renews every lease once.
	deadline := time.Now().Add(renewPeriod + 20*time.Second)
	for r.total().done < n {
		if time.Now().After(deadline) {
			t.Fatalf("renewals after %s: %+v", renewPeriod+20*time.Second, r.total())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := r.total(); s.failed != 0 {
		t.Errorf("failed renewals: %+v", s)
	}
	leases, err := client.CoordinationV1().Leases(leaseNamespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if !l.Spec.RenewTime.After(before) {
			t.Errorf("lease %s renewed at %s, before the renewer started (%s)", l.Name, l.Spec.RenewTime, before)
		}
	}
	requireThreadsAt(t, r.cmd.Process.Pid, fleetPriority{idle: true})
	r.stop()
	select {
	case <-r.done:
	default:
		t.Error("the renewer still runs after stop")
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("renewer exited %d after SIGTERM, want 0", code)
	}
}

// TestRenewerProcessFailsOnBadKubeconfig: a renewer that cannot start ends
// with an error of its own instead of hanging the bench.
func TestRenewerProcessFailsOnBadKubeconfig(t *testing.T) {
	r, err := startRenewerProcess(os.Args[0], filepath.Join(t.TempDir(), "missing"), 1, fleetPriority{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.stop()
		t.Fatal("the renewer still runs with a missing kubeconfig")
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}

// TestMain lets the test binary stand in for the bench's child processes:
// with CASCADE_BENCH_SLEEP set it waits until its stdin closes (a process to
// lower); with -renew-kubeconfig it is the renewer.
func TestMain(m *testing.M) {
	if os.Getenv("CASCADE_BENCH_SLEEP") != "" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	if len(os.Args) == 5 && strings.HasPrefix(os.Args[1], "-renew-kubeconfig=") {
		workers, _ := strconv.Atoi(strings.TrimPrefix(os.Args[2], "-renew-workers="))
		idle, _ := strconv.ParseBool(strings.TrimPrefix(os.Args[3], "-fleet-idle="))
		nice, _ := strconv.Atoi(strings.TrimPrefix(os.Args[4], "-fleet-nice="))
		if err := runRenewer(strings.TrimPrefix(os.Args[1], "-renew-kubeconfig="), workers, fleetPriority{idle: idle, nice: nice}); err != nil {
			fmt.Fprintln(os.Stderr, "renewer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHoldCPULatency: the request is the 32-bit value 0 (here written to
// a regular file standing in for the device), and a missing device is an
// error, not a crash.
func TestHoldCPULatency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu_dma_latency")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := holdCPULatency(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "\x00\x00\x00\x00" {
		t.Errorf("wrote %q, want four zero bytes", got)
	}
	if _, err := holdCPULatency(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing device")
	}
}
