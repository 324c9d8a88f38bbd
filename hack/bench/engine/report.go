package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Goals of issue 4, stated for goalSize nodes.
const (
	goalSize          = 5000
	goalEvalSeconds   = 0.050
	goalIngestionRate = 0.8 // at least 80 % of Prometheus's samples per second
)

// Goals of provider mode (issue 11), stated for a region of
// goalRegionClusters clusters: one full evaluation under
// goalRegionEvalSeconds (median), and a cost per cluster at the largest
// size no more than goalLinearGrowth times the one at the smallest.
const (
	goalRegionClusters    = 1000
	goalRegionEvalSeconds = 0.250
	goalLinearGrowth      = 1.2
)

// size names a size in the tables: nodes, or clusters of a region.
func (s sizeResult) size() string {
	if s.clusters > 0 {
		return fmt.Sprintf("%d×%d", s.clusters, regionNodes)
	}
	return strconv.Itoa(s.nodes)
}

type report struct {
	machine           string
	loadStart         string
	loadEnd           string
	options           options
	cascadeVersion    string
	prometheusVersion string
	sizes             []sizeResult
}

func (r report) print(w io.Writer) {
	o := r.options
	fmt.Fprintf(w, "cascade run beside Prometheus: one fleet target scraped every %s, the same rules evaluated every %s; %s warm-up, %s window\n",
		o.interval, o.interval, o.warmup, o.duration)
	fmt.Fprintf(w, "machine: %s; load average %s at start, %s at end\n", r.machine, r.loadStart, r.loadEnd)
	fmt.Fprintf(w, "%s\n%s\n\n", r.cascadeVersion, r.prometheusVersion)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tserver\trules\tevals\teval p50 ms\teval max ms\tsamples/s\thead series\tRSS median MiB\tRSS peak MiB\tHWM MiB\tCPU %\tCPU s per M samples\tGo heap MiB\t")
	for _, s := range r.sizes {
		for _, x := range s.servers {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%d\t%.2f\t%.2f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t\n",
				s.size(), x.name, x.rules, len(x.evals), median(x.evals)*1000, maxOf(x.evals)*1000,
				x.samplesPerSec, x.headSeries, mib(x.rssMedian), mib(x.rssPeak), mib(x.hwm),
				x.cpuPercent(), x.cpuPerMillion(), x.heapInuse/(1<<20))
		}
		if c, p, ok := s.pair(); ok {
			fmt.Fprintf(tw, "%s\tcascade/prometheus\t\t\t%s\t%s\t%s\t\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.size(),
				ratio(median(c.evals), median(p.evals)), ratio(maxOf(c.evals), maxOf(p.evals)),
				ratio(c.samplesPerSec, p.samplesPerSec),
				ratio(float64(c.rssMedian), float64(p.rssMedian)), ratio(float64(c.rssPeak), float64(p.rssPeak)),
				ratio(float64(c.hwm), float64(p.hwm)), ratio(c.cpuPercent(), p.cpuPercent()),
				ratio(c.cpuPerMillion(), p.cpuPerMillion()), ratio(c.heapInuse, p.heapInuse))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "eval: one full rule evaluation, the sum over rule groups of prometheus_rule_group_last_duration_seconds, every")
	fmt.Fprintln(w, "evaluation in the window; samples/s: slope of prometheus_tsdb_head_samples_appended_total over the window (scraped")
	fmt.Fprintln(w, "samples and rule output); RSS: VmRSS every second in the window; HWM: VmHWM, the lifetime peak; CPU: utime+stime")
	fmt.Fprintln(w, "over the window, % of one core, and per million samples appended (all of the process's CPU, rules included).")
	fmt.Fprintln(w)

	for _, s := range r.sizes {
		agents := make([]string, len(s.agents))
		for i, a := range s.agents {
			agents[i] = fmt.Sprintf("%d by %q", s.scrapes[i], a)
		}
		fmt.Fprintf(w, "size %s: the target served %d KiB per scrape; scrapes over the whole run: %s\n",
			s.size(), s.scrapeBytes/1024, strings.Join(agents, ", "))
		if s.alerts != nil {
			var firing []string
			for _, name := range slices.Sorted(maps.Keys(s.alerts)) {
				firing = append(firing, fmt.Sprintf("%.0f %s", s.alerts[name], name))
			}
			if len(firing) == 0 {
				firing = []string{"none"}
			}
			fmt.Fprintf(w, "  alerts firing in Prometheus at the end: %s\n", strings.Join(firing, ", "))
		}
		for _, x := range s.servers {
			var groups []string
			for _, g := range slices.Sorted(maps.Keys(x.groupEvals)) {
				groups = append(groups, fmt.Sprintf("%s %.2f ms", g, x.groupEvals[g]*1000))
			}
			fmt.Fprintf(w, "  %-12s ready after %.1fs; %.0f samples appended in %.0fs; rules wrote %.0f samples in their last evaluation; %.0f rule evaluation failures\n",
				x.name, x.startup.Seconds(), x.samples, x.wall.Seconds(), x.outputSamples, x.failures)
			fmt.Fprintf(w, "  %-12s median per group: %s\n", "", strings.Join(groups, "; "))
			fmt.Fprintf(w, "  %-12s RSS median %.1f MiB ≈ %.1f anonymous (heap, stacks) + %.1f from files (the binary), medians; RSS at the end %.1f MiB\n",
				"", mib(x.rssMedian), mib(x.anonMedian), mib(x.fileMedian), mib(x.rssLast))
			fmt.Fprintf(w, "  %-12s Go heap in use %.1f MiB, %.1f MiB from the OS, %.0f goroutines\n",
				"", x.heapInuse/(1<<20), x.goSys/(1<<20), x.goroutines)
		}
	}
	fmt.Fprintln(w)
	r.printGoals(w)
}

func (r report) printGoals(w io.Writer) {
	if r.options.region {
		r.printRegionGoals(w)
		return
	}
	var s *sizeResult
	for i := range r.sizes {
		if r.sizes[i].nodes == goalSize {
			s = &r.sizes[i]
		}
	}
	if s == nil {
		fmt.Fprintf(w, "goal check: the goals are stated for %d nodes, which this run did not measure\n", goalSize)
		return
	}
	c, p, ok := s.pair()
	if !ok {
		fmt.Fprintln(w, "goal check: both servers are needed")
		return
	}
	fmt.Fprintf(w, "goal check at %d nodes:\n", goalSize)
	eval := median(c.evals)
	fmt.Fprintf(w, "  %s  one full rule evaluation under %.0f ms (median): %.2f ms median, %.2f ms max over %d evaluations (Prometheus: %.2f ms median)\n",
		verdict(len(c.evals) > 0 && eval < goalEvalSeconds), goalEvalSeconds*1000, eval*1000, maxOf(c.evals)*1000, len(c.evals), median(p.evals)*1000)
	fmt.Fprintf(w, "  %s  RSS no more than Prometheus's (median and peak in the window): median %.1f vs %.1f MiB (%s), peak %.1f vs %.1f MiB (%s); lifetime peak %.1f vs %.1f MiB\n",
		verdict(c.rssMedian <= p.rssMedian && c.rssPeak <= p.rssPeak),
		mib(c.rssMedian), mib(p.rssMedian), ratio(float64(c.rssMedian), float64(p.rssMedian)),
		mib(c.rssPeak), mib(p.rssPeak), ratio(float64(c.rssPeak), float64(p.rssPeak)), mib(c.hwm), mib(p.hwm))
	fmt.Fprintf(w, "  %s  ingestion within 20%% of Prometheus's: %.1f vs %.1f samples/s (%s; equal by construction: same target, same interval);\n",
		verdict(p.samplesPerSec > 0 && c.samplesPerSec >= goalIngestionRate*p.samplesPerSec),
		c.samplesPerSec, p.samplesPerSec, ratio(c.samplesPerSec, p.samplesPerSec))
	fmt.Fprintf(w, "        what ingesting costs: %.2f vs %.2f CPU seconds per million samples (%s), %.2f%% vs %.2f%% of a core\n",
		c.cpuPerMillion(), p.cpuPerMillion(), ratio(c.cpuPerMillion(), p.cpuPerMillion()), c.cpuPercent(), p.cpuPercent())
}

func (r report) printRegionGoals(w io.Writer) {
	type point struct {
		clusters int
		c, p     float64 // median seconds of a full evaluation
	}
	var points []point
	for _, s := range r.sizes {
		if c, p, ok := s.pair(); ok && len(c.evals) > 0 && len(p.evals) > 0 {
			points = append(points, point{s.clusters, median(c.evals), median(p.evals)})
		}
	}
	if len(points) == 0 {
		fmt.Fprintln(w, "goal check: both servers' evaluations are needed")
		return
	}
	fmt.Fprintln(w, "goal check, provider mode:")
	perCluster := func(x point) string {
		return fmt.Sprintf("%d clusters: %.3f vs %.3f ms per cluster", x.clusters, x.c*1000/float64(x.clusters), x.p*1000/float64(x.clusters))
	}
	for _, x := range points {
		if x.clusters == goalRegionClusters {
			fmt.Fprintf(w, "  %s  one full rule evaluation under %.0f ms (median) at %d clusters: %.1f ms (Prometheus: %.1f ms, %s)\n",
				verdict(x.c < goalRegionEvalSeconds), goalRegionEvalSeconds*1000, x.clusters, x.c*1000, x.p*1000, ratio(x.c, x.p))
		}
	}
	if len(points) < 2 {
		fmt.Fprintln(w, "  growth: needs two sizes")
		return
	}
	first, last := points[0], points[len(points)-1]
	growth := (last.c / float64(last.clusters)) / (first.c / float64(first.clusters))
	var each []string
	for _, x := range points {
		each = append(each, perCluster(x))
	}
	fmt.Fprintf(w, "  %s  cost per cluster grows no faster than linearly (at most %.1fx from %d to %d clusters): %.2fx (Prometheus: %.2fx); %s\n",
		verdict(growth <= goalLinearGrowth), goalLinearGrowth, first.clusters, last.clusters, growth,
		(last.p/float64(last.clusters))/(first.p/float64(first.clusters)), strings.Join(each, "; "))
}

// pair is cascade's result and Prometheus's.
func (s sizeResult) pair() (c, p result, ok bool) {
	var hasC, hasP bool
	for _, x := range s.servers {
		switch x.name {
		case nameCascade:
			c, hasC = x, true
		case namePrometheus:
			p, hasP = x, true
		}
	}
	return c, p, hasC && hasP
}

func (x result) cpuPercent() float64 {
	if x.wall <= 0 {
		return 0
	}
	return x.cpuSeconds / x.wall.Seconds() * 100
}

func (x result) cpuPerMillion() float64 {
	if x.samplesPerSec <= 0 || x.wall <= 0 {
		return 0
	}
	return x.cpuSeconds / x.wall.Seconds() / x.samplesPerSec * 1e6
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
