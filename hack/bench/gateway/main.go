// Command gateway measures how fast the gateway exporter turns an nginx
// JSON access log into metrics (parse, route, classify, count), next to
// mtail from Debian counting the same requests by method and status.
//
// It generates (once, cached under .tools/bench/) a 1 GiB access log of
// realistic Kubernetes API traffic for a 5,000-node fleet (mostly kubelet
// lease PUTs and node status PATCHes, with GETs, LISTs, WATCHes and errors
// including 504 bursts), reads it once so both tools find it in the page
// cache, then:
//   - runs the exporter's pipeline in this process, in one goroutine
//     (Exporter.ReadFile: the same reader, parser and counters as the
//     running exporter), with CPU time from getrusage(RUSAGE_SELF), which
//     includes the garbage collector's threads;
//   - runs mtail -one_shot over the same file with a program counting lines
//     and requests by method and status, with CPU time from the child's
//     rusage;
//   - checks that both counted the same lines, and the same requests for
//     every method and status;
//   - prints a table: lines, seconds, CPU seconds, lines/s, lines/s per
//     core (lines over CPU seconds), and the ratio to mtail.
//
// Run it from the repository root (mtail comes from `make deps`):
//
//	go run -tags slicelabels ./hack/bench/gateway [-size=1073741824] [-log=PATH]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/exporters/gateway"
	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/testenv"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

func main() {
	size := flag.Int64("size", 1<<30, "size of the generated access log in bytes")
	logPath := flag.String("log", "", "access log to use (default: generated under .tools/bench/, reused while the generator is unchanged)")
	mtailBin := flag.String("mtail", "mtail", "mtail binary")
	flag.Parse()
	if err := run(*size, *logPath, *mtailBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(size int64, logPath, mtailBin string) error {
	if logPath == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return err
		}
		logPath, err = cachedLog(filepath.Join(root, ".tools", "bench"), size)
		if err != nil {
			return err
		}
	}
	mtailPath, err := exec.LookPath(mtailBin)
	if err != nil {
		return fmt.Errorf("%s not found (make deps installs it from Debian): %w", mtailBin, err)
	}
	fi, err := os.Stat(logPath)
	if err != nil {
		return err
	}
	progress("warming the page cache with %s (%.2f GiB)", logPath, float64(fi.Size())/(1<<30))
	if err := readAll(logPath); err != nil {
		return err
	}
	loadBefore := procstat.LoadAverage()

	progress("exporter pipeline, one goroutine")
	exp, err := measureExporter(logPath)
	if err != nil {
		return err
	}
	progress("mtail -one_shot")
	mt, err := runMtail(mtailPath, logPath)
	if err != nil {
		return err
	}
	loadAfter := procstat.LoadAverage()

	if err := compare(exp, mt); err != nil {
		return err
	}
	report(os.Stdout, fi.Size(), exp, mt, mtailVersion(mtailPath), loadBefore, loadAfter)
	return nil
}

// cachedLog returns the generated log in dir, generating it when missing
// or made by another version of the generator or for another size.
func cachedLog(dir string, size int64) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("gateway-nginx-json-%d.log", size))
	stamp := fmt.Sprintf("generator %s seed %d size %d\n", genVersion, genSeed, size)
	if b, err := os.ReadFile(path + ".stamp"); err == nil && string(b) == stamp {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	progress("generating %s (once; cached for later runs)", path)
	start := time.Now()
	lines, err := generate(path, size)
	if err != nil {
		return "", err
	}
	progress("generated %d lines in %s", lines, time.Since(start).Round(time.Second))
	return path, os.WriteFile(path+".stamp", []byte(stamp), 0o644)
}

func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// exporterResult is what the exporter counted and what it cost.
type exporterResult struct {
	lines     uint64
	parsed    uint64
	malformed uint64
	requests  map[methodCode]uint64
	wall, cpu time.Duration
	series    int
}

func measureExporter(path string) (exporterResult, error) {
	cfg := gateway.DefaultConfig()
	spec := gateway.LogSpec{Format: gateway.FormatNginxJSON, Path: path}
	cfg.Logs = []gateway.LogSpec{spec}
	e, err := gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return exporterResult{}, err
	}
	runtime.GC()
	cpu0 := cpuTime()
	start := time.Now()
	lines, err := e.ReadFile(context.Background(), spec)
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	if err != nil {
		return exporterResult{}, err
	}
	res := exporterResult{lines: lines, requests: map[methodCode]uint64{}, wall: wall, cpu: cpu}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collector{e}); err != nil {
		return exporterResult{}, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return exporterResult{}, err
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case contract.GatewayRequests.Name:
			res.series = len(mf.GetMetric())
			for _, m := range mf.GetMetric() {
				var k methodCode
				for _, lp := range m.GetLabel() {
					switch lp.GetName() {
					case "method":
						k.method = lp.GetValue()
					case "code":
						k.code = lp.GetValue()
					}
				}
				res.requests[k] += uint64(m.GetCounter().GetValue())
			}
		case contract.GatewayLogLines.Name:
			for _, m := range mf.GetMetric() {
				v := uint64(m.GetCounter().GetValue())
				if m.GetLabel()[0].GetValue() == contract.LinesParsed {
					res.parsed = v
				} else {
					res.malformed = v
				}
			}
		}
	}
	return res, nil
}

// collector serves the exporter as the command's exporters.Set would.
type collector struct{ e *gateway.Exporter }

func (c collector) Describe(ch chan<- *prometheus.Desc) { c.e.Describe(ch) }
func (c collector) Collect(ch chan<- prometheus.Metric) { _ = c.e.Update(ch) }

// cpuTime is this process's user and system time so far, all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func compare(e exporterResult, m mtailResult) error {
	var errs []error
	if e.lines != m.lines {
		errs = append(errs, fmt.Errorf("lines: exporter %d, mtail %d", e.lines, m.lines))
	}
	if e.malformed != 0 {
		errs = append(errs, fmt.Errorf("exporter found %d malformed lines in a generated log", e.malformed))
	}
	keys := map[methodCode]bool{}
	for k := range e.requests {
		keys[k] = true
	}
	for k := range m.requests {
		keys[k] = true
	}
	for k := range keys {
		if e.requests[k] != m.requests[k] {
			errs = append(errs, fmt.Errorf("%s %s: exporter %d, mtail %d", k.method, k.code, e.requests[k], m.requests[k]))
		}
	}
	return errors.Join(errs...)
}

func report(w io.Writer, size int64, e exporterResult, m mtailResult, mtailVer string, loadBefore, loadAfter string) {
	perCore := func(lines uint64, cpu time.Duration) float64 { return float64(lines) / cpu.Seconds() }
	ePer, mPer := perCore(e.lines, e.cpu), perCore(m.lines, m.cpu)
	fmt.Fprintf(w, "access log: %.2f GiB, %d lines of nginx JSON (cascade_json), read from the page cache\n", float64(size)/(1<<30), e.lines)
	fmt.Fprintf(w, "machine: %d CPUs, GOMAXPROCS %d, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(w, "load average (1/5/15 min): %s before, %s after\n", loadBefore, loadAfter)
	fmt.Fprintf(w, "mtail: %s\n\n", mtailVer)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tlines\tseconds\tCPU seconds\tlines/s\tlines/s per core\tratio to mtail\t")
	fmt.Fprintf(tw, "cascade gateway exporter\t%d\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t\n",
		e.lines, e.wall.Seconds(), e.cpu.Seconds(), float64(e.lines)/e.wall.Seconds(), ePer, ePer/mPer)
	fmt.Fprintf(tw, "mtail -one_shot\t%d\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t\n",
		m.lines, m.wall.Seconds(), m.cpu.Seconds(), float64(m.lines)/m.wall.Seconds(), mPer, 1.0)
	tw.Flush()
	fmt.Fprintf(w, "\nboth counted %d lines and the same requests for each of %d method/status pairs:\n", e.lines, len(e.requests))
	keys := make([]methodCode, 0, len(e.requests))
	for k := range e.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].method != keys[j].method {
			return keys[i].method < keys[j].method
		}
		return keys[i].code < keys[j].code
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s: %d", k.method, k.code, e.requests[k]))
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "exporter series of cascade_gateway_requests_total: %d\n", e.series)
	goal := "met"
	if ePer < 250000 || ePer <= mPer {
		goal = "NOT met"
	}
	fmt.Fprintf(w, "goal (>= 250,000 lines/s per core and ahead of mtail): %s\n", goal)
}

func mtailVersion(bin string) string {
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		return bin
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
