package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

// watched is one server during the measurement window.
type watched struct {
	*server

	// rule evaluations: per group, the last evaluation timestamp seen and
	// the duration of every evaluation that ended in the window
	lastEval map[string]float64
	groups   map[string][]float64

	appended []point // prometheus_tsdb_head_samples_appended_total, all types
	rss      []uint64
	anon     []uint64
	file     []uint64
	cpu0     uint64

	first, last map[string]float64 // self-metrics at the first and last poll
	result      result
}

type point struct{ t, v float64 }

// result is what the report shows of one server.
type result struct {
	name          string
	startup       time.Duration
	evals         []float64          // seconds of each full evaluation (all groups)
	groupEvals    map[string]float64 // median seconds per group
	rules         float64            // rules loaded
	outputSamples float64            // samples the rules wrote in their last evaluation
	failures      float64            // rule evaluation failures in the window
	samplesPerSec float64
	samples       float64 // appended in the window
	headSeries    float64
	rssMedian     uint64
	rssPeak       uint64
	rssLast       uint64
	anonMedian    uint64 // of RssAnon
	fileMedian    uint64 // of RssFile
	hwm           uint64 // lifetime peak
	cpuSeconds    float64
	wall          time.Duration
	heapInuse     float64 // Go heap in use at the end, bytes
	goSys         float64 // bytes the Go runtime holds from the OS
	goroutines    float64
}

// measure polls both servers for dur: /proc every second, their own
// /metrics every pollEvery (rule evaluations are caught by their last
// evaluation timestamp, so none is missed while pollEvery is below the
// evaluation interval).
func measure(ctx context.Context, servers []*server, dur, pollEvery time.Duration) ([]result, error) {
	ws := make([]*watched, len(servers))
	for i, s := range servers {
		ws[i] = &watched{server: s, lastEval: map[string]float64{}, groups: map[string][]float64{}}
		var err error
		if ws[i].cpu0, err = procstat.CPUTicks(s.pid()); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		m, err := selfMetrics(ctx, s.metrics)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		ws[i].first = m
		// Evaluations that ended before the window are not counted.
		maps.Copy(ws[i].lastEval, byLabel(m, "prometheus_rule_group_last_evaluation_timestamp_seconds", "rule_group"))
	}
	start := time.Now()
	lastPoll := time.Time{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		for _, w := range ws {
			mem, err := procstat.ReadMem(w.pid())
			if err != nil {
				return nil, fmt.Errorf("%s (pid %d) is gone: %w\n%s", w.name, w.pid(), err, w.proc.LogTail(3000))
			}
			w.rss = append(w.rss, mem.RSS)
			w.anon = append(w.anon, mem.Anon)
			w.file = append(w.file, mem.File)
		}
		if now.Sub(lastPoll) >= pollEvery || now.Sub(start) >= dur {
			lastPoll = now
			for _, w := range ws {
				if err := w.poll(ctx, now.Sub(start).Seconds()); err != nil {
					return nil, err
				}
			}
		}
		if now.Sub(start) >= dur {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	wall := time.Since(start)
	out := make([]result, len(ws))
	for i, w := range ws {
		cpu1, err := procstat.CPUTicks(w.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		mem, err := procstat.ReadMem(w.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		out[i] = w.summarise(wall, float64(cpu1-w.cpu0)/procstat.ClockTicks, mem.HWM)
	}
	return out, nil
}

func (w *watched) poll(ctx context.Context, at float64) error {
	m, err := selfMetrics(ctx, w.metrics)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	w.last = m
	durations := byLabel(m, "prometheus_rule_group_last_duration_seconds", "rule_group")
	for group, ts := range byLabel(m, "prometheus_rule_group_last_evaluation_timestamp_seconds", "rule_group") {
		if ts > w.lastEval[group] {
			w.lastEval[group] = ts
			w.groups[group] = append(w.groups[group], durations[group])
		}
	}
	if v, ok := sumFamily(m, "prometheus_tsdb_head_samples_appended_total"); ok {
		w.appended = append(w.appended, point{at, v})
	}
	return nil
}

func (w *watched) summarise(wall time.Duration, cpuSeconds float64, hwm uint64) result {
	r := result{name: w.name, startup: w.startup, wall: wall, cpuSeconds: cpuSeconds, hwm: hwm,
		groupEvals: map[string]float64{}}
	// A full evaluation is the k-th evaluation of every group, added up.
	// Groups run at their own offsets within the interval, so one may have
	// run once more than another in the window: the extra one is left out.
	n := -1
	for _, d := range w.groups {
		if n < 0 || len(d) < n {
			n = len(d)
		}
	}
	for k := range max(n, 0) {
		var sum float64
		for _, d := range w.groups {
			sum += d[len(d)-n+k]
		}
		r.evals = append(r.evals, sum)
	}
	for g, d := range w.groups {
		r.groupEvals[g] = median(d)
	}
	r.rules, _ = sumFamily(w.last, "prometheus_rule_group_rules")
	r.outputSamples, _ = sumFamily(w.last, "prometheus_rule_group_last_evaluation_samples")
	f1, _ := sumFamily(w.last, "prometheus_rule_evaluation_failures_total")
	f0, _ := sumFamily(w.first, "prometheus_rule_evaluation_failures_total")
	r.failures = f1 - f0
	r.samplesPerSec = slope(w.appended)
	if len(w.appended) > 1 {
		r.samples = w.appended[len(w.appended)-1].v - w.appended[0].v
	}
	r.headSeries = w.last["prometheus_tsdb_head_series"]
	r.heapInuse = w.last["go_memstats_heap_inuse_bytes"]
	r.goSys = w.last["go_memstats_sys_bytes"]
	r.goroutines = w.last["go_goroutines"]
	if len(w.rss) > 0 {
		sorted := slices.Sorted(slices.Values(w.rss))
		r.rssMedian = sorted[len(sorted)/2]
		r.rssPeak = sorted[len(sorted)-1]
		r.rssLast = w.rss[len(w.rss)-1]
		r.anonMedian = slices.Sorted(slices.Values(w.anon))[len(w.anon)/2]
		r.fileMedian = slices.Sorted(slices.Values(w.file))[len(w.file)/2]
	}
	return r
}

// slope is the least-squares rate of a counter sampled over time: the
// counter grows in steps (one per scrape, one per evaluation), and a fit
// over the whole window is not thrown off by where the window's ends fall
// between two steps, as a difference of its first and last values would be.
func slope(ps []point) float64 {
	if len(ps) < 2 {
		return 0
	}
	var st, sv float64
	for _, p := range ps {
		st += p.t
		sv += p.v
	}
	mt, mv := st/float64(len(ps)), sv/float64(len(ps))
	var num, den float64
	for _, p := range ps {
		num += (p.t - mt) * (p.v - mv)
		den += (p.t - mt) * (p.t - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}
