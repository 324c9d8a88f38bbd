package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

// probe is one running target being measured.
type probe struct {
	name    string
	scraper *scraper
	pid     int
	startup time.Duration // start until it served the whole fleet
	window  window
	cpu0    uint64
}

// measureAll scrapes every target for dur, interleaved: each round, once
// every interval, scrapes each target in turn (never two at once, and the
// first of the round rotates). The machine is shared, so whatever else runs
// on it during the window hits every target alike, and the ratios between
// them stay meaningful even when the absolute figures are disturbed.
// The scrapes of a round are spread evenly over the interval rather than
// made back to back: what a target does after answering (the floor's and
// kube-state-metrics' garbage collection, tens of milliseconds of CPU at
// 5,000 nodes) would otherwise fall into the next target's scrape.
// A round that takes longer than interval is followed at once by the next.
// Memory is sampled after each scrape; CPU time is taken over the window.
//
// The scraper's own garbage (bodies read, decompressed and parsed: a
// megabyte or more a round) is collected at the end of each round, in the gap
// before the next scrape, and never while one runs: with the collector
// left to itself, its workers started at any moment and took one of the
// two cores from whichever target was answering.
func measureAll(ctx context.Context, probes []*probe, dur, interval time.Duration) error {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, p := range probes {
		p.window = window{seriesMin: math.MaxInt}
		var err error
		if p.cpu0, err = procstat.CPUTicks(p.pid); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	slot := interval / time.Duration(len(probes))
	start := time.Now()
	next := start
	for round := 0; time.Since(start) < dur; round++ {
		for i := range probes {
			if err := sleepUntil(ctx, next.Add(time.Duration(i)*slot)); err != nil {
				return err
			}
			p := probes[(round+i)%len(probes)]
			r, err := p.scraper.scrape(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m, merr := procstat.ReadMem(p.pid)
			if merr != nil {
				return fmt.Errorf("%s (pid %d) is gone: %w", p.name, p.pid, merr)
			}
			p.window.observe(r, err, m)
		}
		runtime.GC()
		next = next.Add(interval)
		if now := time.Now(); now.After(next) {
			next = now
		}
	}
	wall := time.Since(start)
	for _, p := range probes {
		cpu1, err := procstat.CPUTicks(p.pid)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		p.window.wall = wall
		p.window.cpuPercent = float64(cpu1-p.cpu0) / procstat.ClockTicks / wall.Seconds() * 100
		if len(p.window.latencies) == 0 {
			return fmt.Errorf("%s: all %d scrapes failed", p.name, p.window.errors)
		}
	}
	return nil
}

// sleepUntil waits until t, or returns ctx's error if it ends first.
func sleepUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
