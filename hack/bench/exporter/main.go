// Command exporter measures what `cascade exporter` costs to scrape, on a real
// control plane with a realistic fleet, next to the cheapest possible server
// of the same series (the floor) and next to kube-state-metrics (the peer).
//
// For each fleet size N it
//   - starts etcd and kube-apiserver on loopback (internal/testenv),
//   - creates N Nodes of realistic size (labels, capacity, conditions,
//     addresses, ~40 images: 10–20 KB of JSON each) and N Leases in
//     kube-node-lease,
//   - renews every Lease once per 10 s, spread evenly, as kubelets do
//     (N/10 updates/s), from a child process (this binary with
//     -renew-kubeconfig), and reports the rate it achieved,
//   - lowers the priority of etcd, kube-apiserver and the renewer
//     (SCHED_IDLE, -fleet-idle; nice 10 before): they stand in for a
//     control plane and kubelets on other machines. At full priority, and
//     with the renewer in the scraping process, they delayed whichever
//     target was being scraped, the static one included: with this and the
//     spreading below, its p99 at 5,000 nodes went from 4.1 to 1.6 ms,
//   - starts bin/cascade-exporter exporter as it runs by default (its text
//     uncompressed) and with --web.enable-gzip, the floor (this binary
//     re-executed with -floor-nodes=N: a bare client_golang registry with
//     the same metric names, labels and number of series, nothing else
//     running in it), the static target (this binary with -static: one
//     fixed line, what the machine and the scraper cost by themselves) and
//     kube-state-metrics --resources=leases, as it runs by default (its
//     text uncompressed) and with --enable-gzip-encoding, each with its
//     executable dropped from the page cache first, as in a new pod, and
//     waits until each serves the whole fleet,
//   - warms up, then scrapes them for the measurement window with the
//     headers Prometheus sends: in turn, one scrape at a time, each target
//     once per interval, the scrapes spread evenly over it. Interleaving
//     them, rather than measuring one after the other, exposes them all to
//     the same disturbances on a shared machine, so their ratios hold even
//     when the absolute figures do not; spreading them keeps what one
//     target does after answering out of the next one's scrape. The
//     scraper collects its own garbage between rounds, never during a
//     scrape, and idle CPUs poll instead of halting (-cpu-latency), so that
//     waking a halted virtual CPU is not in any target's figures.
//
// Latency is from the start of the request until the last byte of the body
// (gzip, when the target offers it) is read. Memory is VmRSS from
// /proc/PID/status, sampled after every scrape (peak and last), plus VmHWM
// (the lifetime peak, startup included). CPU is the utime+stime delta from
// /proc/PID/stat over the window, as a percentage of one core.
//
// Run it from the repository root after `make build`:
//
//	go run ./hack/bench/exporter [-sizes=1000,5000] [-duration=72s] [-pprof-dir=DIR] [-compare=BIN]
//
// -pprof-dir saves cascade's heap and allocation profiles; -hold only builds
// the fleet and keeps it alive, for running and profiling exporters by hand;
// -compare measures a second exporter binary in the same rounds.
//
// The report goes to stdout, progress to stderr. Everything it starts is
// stopped by pid on exit, on error and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sre/cascade/internal/testenv"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

type options struct {
	sizes        []int
	duration     time.Duration
	warmup       time.Duration
	interval     time.Duration
	cascade      string
	compare      string // a second exporter binary, or ""
	ksm          string
	renewWorkers int
	fleet        fleetPriority
	cpuLatency   bool
	keepTemp     bool
	hold         bool
	pprofDir     string
}

func main() {
	floorNodes := flag.Int("floor-nodes", 0, "internal: serve the floor registry for this many nodes and do nothing else")
	static := flag.Bool("static", false, "internal: serve the static target and do nothing else")
	listen := flag.String("listen", "127.0.0.1:0", "internal: the floor's or the static target's listen address")
	renewKubeconfig := flag.String("renew-kubeconfig", "", "internal: renew every lease of this control plane's fleet (-renew-workers, at -fleet-idle or -fleet-nice) and report on stdout until SIGTERM")
	sizes := flag.String("sizes", "1000,5000", "comma-separated fleet sizes (nodes, and as many leases)")
	o := options{}
	flag.DurationVar(&o.duration, "duration", 72*time.Second, "measurement window per target (the default and -interval's give each target 240 scrapes)")
	flag.DurationVar(&o.warmup, "warmup", 10*time.Second, "scrapes before the window that are not counted")
	flag.DurationVar(&o.interval, "interval", 300*time.Millisecond, "time between two scrapes of a target; the targets' scrapes are spread over it, 50 ms apart for the six targets by default (sequential: a slow scrape delays the next)")
	flag.StringVar(&o.cascade, "cascade", "bin/cascade-exporter", "the exporter binary: cascade-exporter, as the image's exporter Deployment runs it, or cascade (relative paths are from the repository root)")
	flag.StringVar(&o.compare, "compare", "", "a second exporter binary, measured as "+targetCompare+" in the same rounds as the first: an A/B test of a change (relative paths are from the repository root)")
	flag.StringVar(&o.ksm, "ksm", ".tools/bin/kube-state-metrics", "kube-state-metrics binary; when missing, published figures are shown (hack/bench/exporter/install-ksm.sh builds it)")
	flag.IntVar(&o.renewWorkers, "renew-workers", 32, "concurrent lease updates at most")
	flag.BoolVar(&o.fleet.idle, "fleet-idle", true, "run the fleet's etcd, kube-apiserver and lease renewer, which stand in for a control plane and kubelets on other machines, under SCHED_IDLE: only when no target and not the scraper wants a CPU")
	flag.IntVar(&o.fleet.nice, "fleet-nice", 10, "with -fleet-idle=false, the fleet's nice value instead (0: leave it competing with the targets and the scraper for the CPU)")
	flag.BoolVar(&o.cpuLatency, "cpu-latency", true, "keep the CPUs out of idle states slower to leave than polling ("+cpuLatencyDevice+", root only) while measuring: a halted virtual CPU waits for its host to wake it")
	flag.BoolVar(&o.keepTemp, "keep", false, "keep the temp directories (logs of every process) for a look afterwards")
	flag.BoolVar(&o.hold, "hold", false, "create the first size's fleet, keep renewing its leases and wait for Ctrl-C, starting no target: run and profile exporters against it by hand (its kubeconfig is printed)")
	flag.StringVar(&o.pprofDir, "pprof-dir", "", "start cascade with --web.enable-pprof and write its heap and allocation profiles, once it serves the whole fleet and after the window, to this directory")
	flag.Parse()

	if *static {
		if err := serveStatic(*listen); err != nil {
			fmt.Fprintln(os.Stderr, "static:", err)
			os.Exit(1)
		}
		return
	}
	if *renewKubeconfig != "" {
		if err := runRenewer(*renewKubeconfig, o.renewWorkers, o.fleet); err != nil {
			fmt.Fprintln(os.Stderr, "renewer:", err)
			os.Exit(1)
		}
		return
	}
	if *floorNodes > 0 {
		if err := serveFloor(*floorNodes, *listen); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}

	var err error
	if o.sizes, err = parseSizes(*sizes); err != nil {
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
	o.cascade = fromRoot(root, o.cascade)
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return err
		}
	}
	o.ksm = fromRoot(root, o.ksm)
	if o.compare != "" {
		o.compare = fromRoot(root, o.compare)
		if _, err := os.Stat(o.compare); err != nil {
			return fmt.Errorf("-compare: %w", err)
		}
	}
	if _, err := os.Stat(o.cascade); err != nil {
		return fmt.Errorf("%s: %w (run `make build` first)", o.cascade, err)
	}
	if _, err := os.Stat(o.ksm); err != nil {
		progress("kube-state-metrics not found at %s: published peer figures will be shown", o.ksm)
		o.ksm = ""
	}

	m := describeMachine()
	progress("machine: %s", m)
	if o.cpuLatency {
		f, err := holdCPULatency(cpuLatencyDevice)
		if err != nil {
			progress("CPUs left free to halt when idle, so latencies include waking them: %v", err)
		} else {
			defer f.Close()
			m.cpuLatencyHeld = true
		}
	}
	var all []sizeResult
	for _, n := range o.sizes {
		res, err := benchSize(ctx, n, o)
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		all = append(all, res)
	}
	m.loadEnd = procstat.LoadAverage()
	printReport(os.Stdout, m, o, all)
	return nil
}

// benchSize runs every target against one fleet of n nodes.
func benchSize(ctx context.Context, n int, o options) (sizeResult, error) {
	res := sizeResult{nodes: n}
	dir, err := os.MkdirTemp("", fmt.Sprintf("cascade-bench-%d-", n))
	if err != nil {
		return res, err
	}
	if o.keepTemp {
		progress("[%d] logs and data in %s", n, dir)
	} else {
		defer os.RemoveAll(dir)
	}

	progress("[%d] starting etcd and kube-apiserver", n)
	cp, err := testenv.StartControlPlane(dir)
	if err != nil {
		return res, err
	}
	defer func() {
		progress("[%d] stopping the control plane", n)
		cp.Stop()
	}()
	client, err := newClient(cp)
	if err != nil {
		return res, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig); err != nil {
		return res, err
	}

	if err := createFleet(ctx, client, n); err != nil {
		return res, err
	}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	r, err := startRenewerProcess(self, kubeconfig, o.renewWorkers, o.fleet)
	if err != nil {
		return res, err
	}
	defer r.stop()
	fleet := []int{cp.EtcdPid(), cp.APIServerPid()}
	if err := lowerFleet(n, fleet, o.fleet); err != nil {
		return res, err
	}
	runStart := r.total()
	if o.hold {
		progress("[%d] holding: KUBECONFIG=%s; Ctrl-C (or SIGTERM to pid %d) stops everything", n, kubeconfig, os.Getpid())
		<-ctx.Done()
		return res, ctx.Err()
	}

	specs := targetSpecs(o, kubeconfig, n)
	probes, stop, err := startTargets(ctx, dir, specs, n)
	defer stop()
	if err != nil {
		return res, err
	}
	profile := func(when string) error {
		if o.pprofDir == "" || specs[0].name != targetCascade || specs[0].bin == "" {
			return nil
		}
		return saveProfiles(ctx, o.pprofDir, specs[0].url, n, when)
	}
	if err := profile("synced"); err != nil {
		return res, err
	}

	progress("[%d] warming up for %s", n, o.warmup)
	if err := measureAll(ctx, probes, o.warmup, o.interval); err != nil {
		return res, err
	}
	if err := lowerFleet(n, fleet, o.fleet); err != nil {
		return res, err
	}
	progress("[%d] measuring %d targets, interleaved, for %s", n, len(probes), o.duration)
	before := r.total()
	r.resetLate()
	if err := measureAll(ctx, probes, o.duration, o.interval); err != nil {
		return res, err
	}
	res.windowRenew = r.total().since(before)
	if err := profile("end"); err != nil {
		return res, err
	}
	for _, p := range probes {
		res.targets = append(res.targets, targetResult{name: p.name, startup: p.startup, window: p.window})
		progress("[%d] %s: %s", n, p.name, p.window.summary())
	}
	progress("[%d] lease updates during the window: %s", n, res.windowRenew.windowString(n))
	res.renew = r.total().since(runStart)
	res.apiserverRSS = rssOf(cp.APIServerPid()).RSS
	return res, nil
}

// startTargets starts every available target and waits until each serves
// the whole fleet. stop ends those that were started, whatever happened.
func startTargets(ctx context.Context, dir string, specs []targetSpec, n int) (probes []*probe, stop func(), err error) {
	var children []*child
	stop = func() {
		for _, c := range children {
			c.stop()
		}
	}
	for _, spec := range specs {
		if spec.bin == "" {
			continue
		}
		// Every target starts from disk, as in a new pod, whatever ran
		// or was built before (see procstat.DropFromPageCache).
		if err := procstat.DropFromPageCache(spec.bin); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", spec.name, err)
		}
		progress("[%d] %s: starting %s %s", n, spec.name, filepath.Base(spec.bin), strings.Join(spec.args, " "))
		c, err := startChild(dir, spec.name, spec.bin, spec.args...)
		if err != nil {
			return nil, stop, fmt.Errorf("%s: %w", spec.name, err)
		}
		children = append(children, c)
		p := &probe{name: spec.name, scraper: newScraper(spec.url), pid: c.pid()}
		start := time.Now()
		if err := waitReady(ctx, c, p.scraper, spec.ready, 10*time.Minute); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", spec.name, err)
		}
		p.startup = time.Since(start)
		progress("[%d] %s: serving the whole fleet after %s", n, spec.name, p.startup.Round(time.Millisecond))
		probes = append(probes, p)
	}
	return probes, stop, nil
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a positive number", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func fromRoot(root, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// progress writes one timestamped line to stderr: the run is long.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
