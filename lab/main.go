// Command lab reproduces the outage Cascade exists for on real components
// and watches Cascade page for it: real API servers (or the provider's
// shared regional API) that really run out of memory under simultaneous
// deployments and are killed at their memory limit, real node leases that
// stop being renewed, a real node lifecycle controller marking nodes
// NotReady, a real gateway flooded by retries, and a real Alertmanager
// receiving the page. It prints the real timeline as it happens and
// writes it beside `cascade report`'s timeline of the same run.
//
//	go run ./lab --shape cluster --nodes 1000
//	go run ./lab --shape region --clusters 3 --nodes 300
//	go run ./lab --shape cluster --dry-run
//
// Everything runs on 127.0.0.1 in a temporary directory, each process
// stopped by its pid at the end, even on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/cascade-sre/cascade/internal/testenv"
)

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "lab: stopping everything (again to quit at once; the next run removes what is left)")
		cancel()
		<-sigs
		os.Exit(130)
	}()
	f, checks, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(o.Out, "\nlab: %s shape%s, %d cluster(s) of %d nodes; outputs in %s\n", f.Shape, map[bool]string{true: " (dry run)"}[f.DryRun], f.Clusters, f.Nodes, o.OutputDir)
	failed := false
	for _, c := range checks {
		mark := "PASS"
		if !c.OK {
			mark, failed = "FAIL", true
		}
		fmt.Fprintf(o.Out, "  %s  %s (%s)\n", mark, c.What, c.Got)
	}
	if failed {
		os.Exit(1)
	}
}

// parseFlags turns the command line into Options, with the defaults of
// the full-size runs.
func parseFlags(args []string, stderr io.Writer) (Options, error) {
	o := Options{Out: os.Stdout, Command: "go run ./lab " + strings.Join(args, " ")}
	var limit, remedy string
	fs := flagSet(&o, &limit, &remedy)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lab: unexpected argument %q\n", fs.Arg(0))
		return o, errors.New("arguments")
	}
	for _, q := range []struct {
		flag string
		text string
		into *int64
	}{{"--memory-limit", limit, &o.MemoryLimit}, {"--remedy-limit", remedy, &o.RemedyLimit}} {
		if q.text == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.text)
		if err != nil || v.Value() <= 0 {
			fmt.Fprintf(stderr, "lab: %s %q: want a positive quantity such as 600Mi\n", q.flag, q.text)
			return o, errors.New("bad quantity")
		}
		*q.into = v.Value()
	}
	if err := o.complete(); err != nil {
		fmt.Fprintf(stderr, "lab: %v\n", err)
		return o, err
	}
	return o, nil
}

// flagSet is the lab's flags, into o and the two quantities.
func flagSet(o *Options, limit, remedy *string) *flag.FlagSet {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.StringVar(&o.Shape, "shape", "cluster", "cluster (one API server runs out of memory) or region (a shared regional API does)")
	fs.IntVar(&o.Nodes, "nodes", 0, "nodes per cluster (default 1000 for cluster, 300 for region)")
	fs.IntVar(&o.Clusters, "clusters", 3, "clusters of the region shape (3 or more)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "no fault: deployments within the limit (region: and one node lost in one cluster); nothing may page")
	fs.DurationVar(&o.Interval, "interval", 10*time.Second, "scrape and evaluation interval of cascade run")
	fs.DurationVar(&o.Baseline, "baseline", 2*time.Minute, "healthy time before the fault")
	fs.DurationVar(&o.RemedyAfter, "remedy-after", 3*time.Minute, "time from the first OOM kill to the remedy (limit raised, a second replica)")
	fs.BoolVar(&o.AwaitResolve, "await-resolve", true, "after the recovery, wait for Cascade's recovery event and the page's resolution")
	fs.DurationVar(&o.Settle, "settle", 2*time.Minute, "how long to keep watching at the end (a dry run's watch after its deployments)")
	fs.StringVar(limit, "memory-limit", "", "memory limit of what runs out of memory (a quantity: 600Mi); default sized from the fleet")
	fs.StringVar(remedy, "remedy-limit", "", "the limit the remedy raises it to; default sized from the deployments")
	fs.DurationVar(&o.WebhookCacheTTL, "webhook-cache-ttl", 10*time.Second, "region: how long the API servers cache a node's authentication")
	fs.StringVar(&o.Cascade, "cascade", "", "cascade binary; empty: build it")
	fs.StringVar(&o.OutputDir, "output.dir", "", "where the timelines and figures go (default cascade-lab/SHAPE[-dry-run])")
	fs.BoolVar(&o.KeepWorkDir, "keep", false, "keep the work dir (data and logs of every component)")
	fs.DurationVar(&o.Timeout, "timeout", time.Hour, "bound on the whole run")
	return fs
}

// complete fills in the defaults and checks the options.
func (o *Options) complete() error {
	switch o.Shape {
	case "cluster":
		if o.Nodes == 0 {
			o.Nodes = 1000
		}
	case "region":
		if o.Nodes == 0 {
			o.Nodes = 300
		}
		if o.Clusters < 3 {
			return fmt.Errorf("--clusters %d: the region shape needs 3 or more (a regional incident needs 3 clusters hit)", o.Clusters)
		}
		if o.WebhookCacheTTL <= 0 {
			return errors.New("--webhook-cache-ttl must be positive")
		}
	default:
		return fmt.Errorf("--shape %q: want cluster or region", o.Shape)
	}
	if o.Nodes < 10 || o.Nodes > 5000 {
		return fmt.Errorf("--nodes %d: want 10 to 5000 (the rules need 10 nodes for a fleet-wide symptom)", o.Nodes)
	}
	if o.Interval < time.Second || o.Interval > 30*time.Second {
		return fmt.Errorf("--interval %s: want 1s to 30s", o.Interval)
	}
	if o.RemedyLimit > 0 && o.MemoryLimit > 0 && o.RemedyLimit <= o.MemoryLimit {
		return errors.New("--remedy-limit must be above --memory-limit")
	}
	if o.Cascade != "" {
		// The components start in their own directories: a relative path
		// (make lab's bin/cascade) is the caller's.
		abs, err := filepath.Abs(o.Cascade)
		if err != nil {
			return fmt.Errorf("--cascade %q: %w", o.Cascade, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--cascade: %w", err)
		}
		o.Cascade = abs
	}
	if o.OutputDir == "" {
		o.OutputDir = filepath.Join("cascade-lab", o.Shape)
		if o.DryRun {
			o.OutputDir += "-dry-run"
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// Run runs the lab once and returns its figures and verdict. Everything it
// started is stopped and its temporary files removed before it returns.
func Run(parent context.Context, o Options) (Figures, []check, error) {
	if err := o.complete(); err != nil {
		return Figures{}, nil, err
	}
	started, startLoad := time.Now(), loadAverage()
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	if removed := testenv.RemoveStaleMemoryCgroups(cgroupPrefix); len(removed) > 0 {
		fmt.Fprintf(o.Out, "lab: removed memory cgroups a killed run left: %v\n", removed)
	}
	dir, err := os.MkdirTemp("", "cascade-lab-")
	if err != nil {
		return Figures{}, nil, err
	}
	l := &lab{opts: o, dir: dir, out: o.Out, tl: newTimeline(o.Out), targetsDir: filepath.Join(dir, "targets")}
	defer func() {
		if o.KeepWorkDir {
			fmt.Fprintf(o.Out, "lab: the work dir is kept: %s\n", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(o.Out, "lab: %v\n", err)
		}
	}()
	if err := os.MkdirAll(l.targetsDir, 0o755); err != nil {
		return Figures{}, nil, err
	}
	// The kubelets' and observers' client-go logs go to a file: their
	// errors are what the lab provokes, and the timeline shows them.
	klogFile, err := os.Create(filepath.Join(dir, "client-go.log"))
	if err != nil {
		return Figures{}, nil, err
	}
	defer klogFile.Close()
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("alsologtostderr", "false")
	_ = klogFlags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(klogFile)

	l.cascade = o.Cascade
	if l.cascade == "" {
		fmt.Fprintln(o.Out, "lab: building cascade")
		if l.cascade, err = testenv.BuildCascade(dir); err != nil {
			return Figures{}, nil, err
		}
	}
	fmt.Fprintf(o.Out, "lab: %s shape, %d nodes per cluster, work dir %s\n", o.Shape, o.Nodes, dir)

	runCtx, stop := context.WithCancel(ctx)
	var runErr error
	func() {
		defer l.cleanup()
		defer stop()
		if o.Shape == "cluster" {
			runErr = l.runClusterShape(runCtx)
		} else {
			runErr = l.runRegionShape(runCtx)
		}
	}()
	if runErr != nil && parent.Err() != nil {
		runErr = fmt.Errorf("interrupted: %w", parent.Err())
	} else if runErr != nil {
		l.dumpLogs()
	}
	if l.tl.first(evFault, "*").IsZero() && l.tl.first(evDeploy, "*").IsZero() {
		return Figures{}, nil, runErr // nothing happened worth writing
	}
	// Past the fault, what was seen is written even when the run broke off.
	f := l.figures(started, startLoad, l.killMechanism, l.limit, l.remedyLimit)
	checks := verdict(f)
	if err := l.writeOutputs(f, checks); err != nil {
		return f, checks, errors.Join(runErr, err)
	}
	if runErr != nil {
		fmt.Fprintf(o.Out, "lab: the run broke off; what it saw is in %s\n", o.OutputDir)
	}
	return f, checks, runErr
}

// dumpLogs prints the tail of every component's log after a failed run.
func (l *lab) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(l.dir, "*", "*.log"))
	more, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
	for _, p := range append(more, logs...) {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 1500 {
			b = b[len(b)-1500:]
		}
		fmt.Fprintf(l.out, "--- %s (tail)\n%s\n", p, b)
	}
}
