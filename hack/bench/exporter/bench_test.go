package main

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
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
