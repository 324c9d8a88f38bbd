package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

type targetResult struct {
	name    string
	startup time.Duration // start until it served the whole fleet
	window  window
}

type sizeResult struct {
	nodes        int
	targets      []targetResult
	windowRenew  renewStats // lease renewals during the measurement window
	renew        renewStats // over the whole run of this size
	apiserverRSS uint64
}

// selfReport is what a Go target said about itself in its last scrape.
func (t targetResult) selfReport() string {
	rt := t.window.goRuntime
	if _, ok := rt["go_memstats_heap_inuse_bytes"]; !ok {
		return ""
	}
	out := fmt.Sprintf("Go heap in use %.1f MiB (%.0fk objects), stacks %.1f MiB, %.1f MiB from the OS, %.0f goroutines, GOGC %.0f",
		rt["go_memstats_heap_inuse_bytes"]/(1<<20), rt["go_memstats_heap_objects"]/1000,
		rt["go_memstats_stack_inuse_bytes"]/(1<<20), rt["go_memstats_sys_bytes"]/(1<<20),
		rt["go_goroutines"], rt["go_gc_gogc_percent"])
	if u := t.window.updateSeconds; t.name == targetCascade && len(u) > 0 {
		sorted := slices.Sorted(slices.Values(u))
		out += fmt.Sprintf("; its cascade_exporter_scrape_duration_seconds{exporter=\"nodelease\"} p50 %.2f ms, max %.2f ms",
			sorted[len(sorted)/2]*1000, sorted[len(sorted)-1]*1000)
	}
	return out
}

func (s sizeResult) target(name string) (targetResult, bool) {
	for _, t := range s.targets {
		if t.name == name {
			return t, true
		}
	}
	return targetResult{}, false
}

// publishedPeer is kube-state-metrics as published (lease metrics only,
// 5,000 leases, a 2-core machine), shown when it could not be measured here.
var publishedPeer = struct {
	nodes          int
	p50, p99       float64 // ms
	rssMiB, cpuPct float64
}{5000, 8.9, 22.5, 63, 3.6}

// goalSize is the fleet size the goals are stated for.
const goalSize = 5000

func printReport(w io.Writer, m machine, o options, all []sizeResult) {
	fmt.Fprintf(w, "cascade exporter benchmark: all targets running, scraped in turn (one at a time, spread evenly) every %s for %s after %s of warm-up\n",
		o.interval, o.duration, o.warmup)
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s; load average %s at start, %s at end; %s\n\n",
		m.cpus, m.model, m.goVersion, m.loadStart, m.loadEnd, m.idleCPUs())

	printTable(w, all)

	fmt.Fprintln(w)
	for _, s := range all {
		fmt.Fprintf(w, "size %d: lease updates in the window %s; over the whole run %s; kube-apiserver RSS %.0f MiB at the end\n",
			s.nodes, s.windowRenew.windowString(s.nodes), s.renew.rateString(s.nodes), mib(s.apiserverRSS))
		for _, t := range s.targets {
			fmt.Fprintf(w, "  %-18s ready after %-8s scrape %4d KiB text, %4d KiB on the wire; %d of %d scrapes failed\n",
				t.name, t.startup.Round(100*time.Millisecond), t.window.textBytes/1024, t.window.wireBytes/1024,
				t.window.errors, t.window.errors+len(t.window.latencies))
			if self := t.selfReport(); self != "" {
				fmt.Fprintf(w, "  %-18s %s\n", "", self)
			}
		}
	}
	fmt.Fprintln(w)
	printPeerRatios(w, all)
	printGoals(w, all)
}

// printPeerRatios gives each exporter's figures as ratios to its peer's in
// the same rounds, as issue 15 states its goals (RSS at most 0.8x, p99 at
// most 0.5x, CPU at most 1x, the start-up peak at most the steady state):
// cascade's, by default, to kube-state-metrics', by default (both send
// their text as it is); cascade-gzip's to kube-state-metrics-gzip's (both
// compress it).
func printPeerRatios(w io.Writer, all []sizeResult) {
	pairs := []struct{ target, peer string }{
		{targetCascade, targetPeer},
		{targetCompare, targetPeer},
		{targetCascadeGzip, targetPeerGzip},
	}
	for _, s := range all {
		for _, pair := range pairs {
			c, ok := s.target(pair.target)
			peer, peerOK := s.target(pair.peer)
			if !ok || !peerOK {
				continue
			}
			fmt.Fprintf(w, "size %d: %s to %s: RSS %.2fx, p99 %.2fx, p50 %.2fx, CPU %.2fx; lifetime peak %.1f MiB against %.1f in the window\n",
				s.nodes, pair.target, pair.peer, float64(c.window.rssPeak)/float64(peer.window.rssPeak),
				ratio(c.window.percentile(0.99), peer.window.percentile(0.99)),
				ratio(c.window.percentile(0.5), peer.window.percentile(0.5)),
				c.window.cpuPercent/peer.window.cpuPercent, mib(c.window.hwm), mib(c.window.rssPeak))
		}
	}
	fmt.Fprintln(w)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

var columns = []struct {
	title string
	width int
}{
	{"size", 6}, {"target", 26}, {"series", 8}, {"p50 ms", 8}, {"p99 ms", 8}, {"max ms", 8},
	{"RSS peak", 9}, {"RSS last", 9}, {"HWM", 7}, {"anon peak", 10}, {"file", 7}, {"CPU %", 7}, {"µs/series", 10}, {"KiB/series", 11},
	{"p99/floor", 10}, {"RSS/floor", 10},
}

func printTable(w io.Writer, all []sizeResult) {
	row := func(cells ...string) {
		var b strings.Builder
		for i, c := range cells {
			if i < 2 {
				fmt.Fprintf(&b, "%-*s", columns[i].width, c)
			} else {
				fmt.Fprintf(&b, "%*s", columns[i].width, c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	titles := make([]string, len(columns))
	for i, c := range columns {
		titles[i] = c.title
	}
	row(titles...)

	for _, s := range all {
		floor, hasFloor := s.target(targetFloor)
		for _, t := range s.targets {
			series := t.window.seriesMax
			p50, p99 := ms(t.window.percentile(0.5)), ms(t.window.percentile(0.99))
			p99Ratio, rssRatio := "-", "-"
			if hasFloor {
				p99Ratio = fmt.Sprintf("%.2f", p99/ms(floor.window.percentile(0.99)))
				rssRatio = fmt.Sprintf("%.2f", float64(t.window.rssPeak)/float64(floor.window.rssPeak))
			}
			row(fmt.Sprint(s.nodes), t.name, fmt.Sprint(series),
				f2(p50), f2(p99), f2(ms(t.window.percentile(1))),
				f1(mib(t.window.rssPeak)), f1(mib(t.window.rssLast)), f1(mib(t.window.hwm)),
				f1(mib(t.window.anonPeak)), f1(mib(t.window.fileLast)), f1(t.window.cpuPercent),
				f2(p50*1000/float64(series)), f2(float64(t.window.rssPeak)/1024/float64(series)),
				p99Ratio, rssRatio)
		}
		if _, measured := s.target(targetPeer); !measured && s.nodes == publishedPeer.nodes {
			p := publishedPeer
			row(fmt.Sprint(s.nodes), targetPeer+" (published)", "-", f2(p.p50), f2(p.p99), "-",
				f1(p.rssMiB), "-", "-", "-", "-", f1(p.cpuPct), "-", "-", "-", "-")
		}
	}
	fmt.Fprintln(w, "RSS peak/last: VmRSS in MiB sampled after each scrape of the window, highest and last; HWM: VmHWM in MiB, the")
	fmt.Fprintln(w, "process's lifetime peak (startup included); anon peak: RssAnon in MiB, the process's own memory (heap, stacks),")
	fmt.Fprintln(w, "highest in the window; file: RssFile in MiB at the end, mapped files (the executable's pages: it depends on the")
	fmt.Fprintln(w, "binary's size and the kernel, not on the fleet); CPU: utime+stime over the window, % of one core; µs/series uses the")
	fmt.Fprintln(w, "p50 latency, KiB/series the RSS peak; the ratios to the floor use the p99 latency and the RSS peak.")
}

// printGoals checks the exporter against its goals at goalSize nodes.
func printGoals(w io.Writer, all []sizeResult) {
	var s *sizeResult
	for i := range all {
		if all[i].nodes == goalSize {
			s = &all[i]
		}
	}
	if s == nil {
		fmt.Fprintf(w, "goal check: the goals are stated for %d nodes, which this run did not measure\n", goalSize)
		return
	}
	c, ok := s.target(targetCascade)
	if !ok {
		fmt.Fprintln(w, "goal check: cascade was not measured")
		return
	}
	p99, rss := ms(c.window.percentile(0.99)), mib(c.window.rssPeak)
	fmt.Fprintf(w, "goal check at %d nodes:\n", goalSize)
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	fmt.Fprintf(w, "  %s  p99 latency below 10 ms: %.2f ms\n", verdict(p99 < 10), p99)
	fmt.Fprintf(w, "  %s  RSS below 50 MiB: %.1f MiB peak in the window (%.1f MiB at its end, lifetime peak %.1f MiB;\n"+
		"        its own memory peaked at %.1f MiB, %.1f MiB at the end are pages of the executable)\n",
		verdict(rss < 50), rss, mib(c.window.rssLast), mib(c.window.hwm), mib(c.window.anonPeak), mib(c.window.fileLast))

	peerCPU, peerWhat := publishedPeer.cpuPct, "kube-state-metrics, published, not measured here"
	if peer, ok := s.target(targetPeer); ok {
		peerCPU, peerWhat = peer.window.cpuPercent, "kube-state-metrics, measured in this run"
	}
	fmt.Fprintf(w, "  %s  CPU below the peer: %.1f%% of a core vs %.1f%% (%s)\n",
		verdict(c.window.cpuPercent < peerCPU), c.window.cpuPercent, peerCPU, peerWhat)

	floor, ok := s.target(targetFloor)
	if !ok {
		fmt.Fprintln(w, "  ----  within 2x of the floor: the floor was not measured")
		return
	}
	p99Ratio := p99 / ms(floor.window.percentile(0.99))
	rssRatio := float64(c.window.rssPeak) / float64(floor.window.rssPeak)
	fmt.Fprintf(w, "  %s  within 2x of the floor: p99 %.2fx (%.2f vs %.2f ms), RSS %.2fx (%.1f vs %.1f MiB)\n",
		verdict(p99Ratio <= 2 && rssRatio <= 2), p99Ratio, p99, ms(floor.window.percentile(0.99)),
		rssRatio, rss, mib(floor.window.rssPeak))
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
