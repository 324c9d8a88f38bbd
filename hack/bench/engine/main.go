// Command engine measures `cascade run` beside Prometheus on the same work:
// both scrape the same fleet target and evaluate the same rule files, in the
// same run, on the same machine.
//
// For each fleet size N it
//   - serves, from this process, one scrape target with the metric contract
//     of a healthy N-node cluster "now" (fleet.go): N lease renew times and
//     durations moving with the wall clock, the aggregate lease and node
//     counts, three API server replicas' memory, growing gateway counters
//     and latency histograms;
//   - starts `bin/cascade run` (exporters off; its embedded rules, which are
//     rules/*.yml) and Debian's Prometheus (rule_files: rules/*.yml of this
//     repository), both scraping that target every 15 s and evaluating every
//     15 s, on 127.0.0.1, their data in a temp dir;
//   - waits out a warm-up, then for the window reads, from both:
//   - one full rule evaluation: the sum over rule groups of
//     prometheus_rule_group_last_duration_seconds, every evaluation in
//     the window (caught by its evaluation timestamp); median and max;
//   - samples ingested per second: the slope of
//     prometheus_tsdb_head_samples_appended_total over the window;
//   - RSS: VmRSS from /proc/PID/status every second (median, peak, last)
//     and VmHWM (the lifetime peak);
//   - CPU: utime+stime from /proc/PID/stat over the window;
//   - prints a table with the ratios cascade/Prometheus and checks the goals
//     (evaluation under 50 ms, RSS no more than Prometheus's, ingestion
//     within 20 % of Prometheus's) at 5,000 nodes.
//
// With -region, each size is a region of that many clusters of 50 nodes
// behind a shared regional API and gateway (region.go), healthy or, with
// -incident, in the seed's outage; the goals are then those of provider mode
// (issue 11): one full evaluation under 250 ms (median) at 1,000 clusters,
// and a cost per cluster that does not grow with the region (make
// bench-region).
//
// Both scrape the same target at the same interval, so they ingest the same
// samples per second by construction; what differs is what ingesting them
// costs, shown as CPU seconds per million samples (all of the process's CPU,
// rule evaluation included).
//
// Run it from the repository root after `make build` (make bench-engine):
//
//	go run ./hack/bench/engine [-sizes=5000] [-duration=4m] [-warmup=1m]
//	go run ./hack/bench/engine -region [-incident] -sizes=100,300,1000
//
// The report goes to stdout, progress to stderr. Everything it starts is
// stopped by pid on exit, on error and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sre/cascade/internal/testenv"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

const (
	nameCascade    = "cascade run"
	namePrometheus = "prometheus"
)

type options struct {
	sizes       []int
	duration    time.Duration
	warmup      time.Duration
	interval    time.Duration
	poll        time.Duration
	cascade     string
	prometheus  string
	heapProfile string
	keep        bool
	region      bool // sizes are clusters of a region
	incident    bool // the region in the seed's outage
	faultAfter  time.Duration
}

func main() {
	var o options
	sizes := flag.String("sizes", "5000", "comma-separated fleet sizes (nodes; clusters with -region)")
	flag.BoolVar(&o.region, "region", false, "serve a region: each size is a number of clusters of 50 nodes behind a shared regional API and gateway")
	flag.BoolVar(&o.incident, "incident", false, "with -region: the shared API OOM-killed and three clusters in four losing their leases, all along (the heaviest evaluation)")
	flag.DurationVar(&o.faultAfter, "fault-after", 20*time.Second, "with -incident: when the shared API's first OOM kill comes, after the target starts (keep it well inside -warmup)")
	flag.DurationVar(&o.duration, "duration", 4*time.Minute, "measurement window per size")
	flag.DurationVar(&o.warmup, "warmup", time.Minute, "time after both are ready before the window starts")
	flag.DurationVar(&o.interval, "interval", 15*time.Second, "scrape and evaluation interval of both")
	flag.DurationVar(&o.poll, "poll", 2*time.Second, "how often both servers' own /metrics are read (below the interval)")
	flag.StringVar(&o.cascade, "cascade", "bin/cascade", "the cascade binary (relative paths are from the repository root)")
	flag.StringVar(&o.prometheus, "prometheus", "", "the Prometheus binary (default: found like the tests find it: $CASCADE_PROMETHEUS, .tools/bin, PATH)")
	flag.StringVar(&o.heapProfile, "heap-profile", "", "at the end of each window, save cascade's heap profile to this path (suffixed with the size); needs a cascade with --web.enable-pprof")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp directories (logs and data of both) for a look afterwards")
	flag.Parse()

	var err error
	if o.sizes, err = parseSizes(*sizes); err == nil && o.poll >= o.interval {
		err = fmt.Errorf("-poll (%s) must be below -interval (%s), or evaluations are missed", o.poll, o.interval)
	} else if err == nil && o.incident && !o.region {
		err = errors.New("-incident needs -region")
	} else if err == nil && o.incident && o.faultAfter >= o.warmup {
		err = fmt.Errorf("-fault-after (%s) must be inside -warmup (%s), or the window measures the fault's start", o.faultAfter, o.warmup)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted; everything started was stopped")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(o.cascade) {
		o.cascade = filepath.Join(root, o.cascade)
	}
	if _, err := os.Stat(o.cascade); err != nil {
		return fmt.Errorf("%s: %w (run `make build` first)", o.cascade, err)
	}
	if o.prometheus == "" {
		if o.prometheus, err = testenv.ToolPath("prometheus"); err != nil {
			return err
		}
	}
	ruleFiles, err := ruleFilesOf(root)
	if err != nil {
		return err
	}
	rep := report{machine: procstat.Machine(), loadStart: procstat.LoadAverage(), options: o,
		prometheusVersion: versionOf(o.prometheus, "--version"), cascadeVersion: versionOf(o.cascade, "version")}
	progress("machine: %s; load average %s", rep.machine, rep.loadStart)
	for _, n := range o.sizes {
		s, err := benchSize(ctx, n, o, ruleFiles)
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		rep.sizes = append(rep.sizes, s)
	}
	rep.loadEnd = procstat.LoadAverage()
	rep.print(os.Stdout)
	return nil
}

// sizeResult is one fleet size: both servers and what the target served.
type sizeResult struct {
	nodes       int
	clusters    int // of a region; 0 for one cluster
	servers     []result
	agents      []string
	scrapes     []int
	scrapeBytes int
	alerts      map[string]float64 // firing alerts by name in Prometheus at the end of the window
}

func benchSize(ctx context.Context, n int, o options, ruleFiles []string) (sizeResult, error) {
	res := sizeResult{nodes: n}
	var region regionSpec
	if o.region {
		region = regionSpec{clusters: n, incident: o.incident, faultAfter: o.faultAfter}
		res.nodes, res.clusters = n*regionNodes, n
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("cascade-bench-engine-%d-", n))
	if err != nil {
		return res, err
	}
	if o.keep {
		progress("[%d] logs and data in %s", n, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	f, err := startFleet(res.nodes, region)
	if err != nil {
		return res, err
	}
	defer f.stop()
	progress("[%d] fleet target at http://%s/metrics; starting Prometheus and cascade run", n, f.addr)

	prom, err := startPrometheus(dir, o.prometheus, f.addr, o.interval, o.region, ruleFiles)
	if err != nil {
		return res, err
	}
	defer prom.proc.Stop()
	casc, err := startCascade(dir, o.cascade, f.addr, o.interval, o.region, o.heapProfile != "")
	if err != nil {
		return res, err
	}
	defer casc.proc.Stop()
	progress("[%d] ready (prometheus after %s, cascade run after %s); warming up for %s",
		n, prom.startup.Round(100*time.Millisecond), casc.startup.Round(100*time.Millisecond), o.warmup)
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(o.warmup):
	}
	progress("[%d] measuring for %s", n, o.duration)
	servers := []*server{casc, prom}
	res.servers, err = measure(ctx, servers, o.duration, o.poll)
	if err != nil {
		return res, err
	}
	res.agents, res.scrapes, res.scrapeBytes = f.scrapeCounts()
	if res.alerts, err = firingAlerts(ctx, strings.TrimSuffix(prom.metrics, "/metrics")); err != nil {
		progress("[%d] firing alerts: %v", n, err)
	}
	if o.heapProfile != "" {
		path := o.heapProfile + "." + strconv.Itoa(n)
		if err := saveHeapProfile(ctx, strings.TrimSuffix(casc.metrics, "/metrics")+"/debug/pprof/heap", path); err != nil {
			progress("[%d] heap profile: %v", n, err)
		} else {
			progress("[%d] cascade's heap profile in %s (go tool pprof %s)", n, path, path)
		}
	}
	return res, nil
}

func saveHeapProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s (does this cascade have --web.enable-pprof?)", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// versionOf is the first line of what bin prints for its version.
func versionOf(bin, arg string) string {
	out, err := exec.Command(bin, arg).CombinedOutput()
	if err != nil {
		return "unknown version"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a positive number of nodes", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}
