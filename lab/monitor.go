package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// gatewayRate counts the gateway's access log lines as they are written:
// requests per second, at one-second resolution, over 10-second windows
// (a scrape interval's rate).
type gatewayRate struct {
	path string

	mu       sync.Mutex
	perSec   []int // requests completed in each second since start
	start    time.Time
	peak     float64
	peakAt   time.Time
	lastRate float64
}

func newGatewayRate(path string) *gatewayRate { return &gatewayRate{path: path} }

// run reads new lines every second until ctx ends.
func (g *gatewayRate) run(ctx context.Context) {
	g.mu.Lock()
	g.start = time.Now()
	g.mu.Unlock()
	var offset int64
	buf := make([]byte, 1<<20)
	every(ctx, time.Second, func(now time.Time) {
		var n int
		n, offset = countLines(g.path, offset, buf)
		g.add(now, n)
	})
}

// countLines counts newlines in path from offset on; a file shorter than
// offset was rotated or truncated and is read from its start.
func countLines(path string, offset int64, buf []byte) (int, int64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, offset
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < offset {
		offset = 0
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, offset
	}
	n := 0
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		offset += int64(k)
		if err != nil {
			return n, offset
		}
	}
}

func (g *gatewayRate) add(now time.Time, lines int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perSec = append(g.perSec, lines)
	const window = 10
	if len(g.perSec) < window {
		return
	}
	sum := 0
	for _, v := range g.perSec[len(g.perSec)-window:] {
		sum += v
	}
	g.lastRate = float64(sum) / window
	if g.lastRate > g.peak {
		g.peak, g.peakAt = g.lastRate, now
	}
}

// rate is the request rate over the last 10 s.
func (g *gatewayRate) rate() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastRate
}

// peakSince is the highest 10-second rate at or after from, and when.
func (g *gatewayRate) peakSince(from time.Time) (float64, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	const window = 10
	var best float64
	var at time.Time
	for i := window; i <= len(g.perSec); i++ {
		end := g.start.Add(time.Duration(i) * time.Second)
		if end.Before(from) {
			continue
		}
		sum := 0
		for _, v := range g.perSec[i-window : i] {
			sum += v
		}
		if r := float64(sum) / window; r > best {
			best, at = r, end
		}
	}
	return best, at
}

// meanBetween is the mean request rate between two times.
func (g *gatewayRate) meanBetween(from, to time.Time) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	sum, n := 0, 0
	for i, v := range g.perSec {
		at := g.start.Add(time.Duration(i+1) * time.Second)
		if at.After(from) && !at.After(to) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n)
}

// usage samples a process's CPU time and resident set.
type usage struct {
	pid int

	mu       sync.Mutex
	first    time.Time
	cpuStart float64
	cpu      float64
	last     time.Time
	rss      int
	peakRSS  int
}

// run samples every 2 s until ctx ends or the process is gone.
func (u *usage) run(ctx context.Context) {
	p, err := procfs.NewProc(u.pid)
	if err != nil {
		return
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		st, err := p.Stat()
		if err != nil {
			return
		}
		now := time.Now()
		u.mu.Lock()
		if u.first.IsZero() {
			u.first, u.cpuStart = now, st.CPUTime()
		}
		u.cpu, u.last, u.rss = st.CPUTime(), now, st.ResidentMemory()
		u.peakRSS = max(u.peakRSS, u.rss)
		u.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// summary is the CPU seconds used, the mean cores, and the peak RSS.
func (u *usage) summary() (cpuSeconds, cores float64, peakRSS int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cpuSeconds = u.cpu - u.cpuStart
	if d := u.last.Sub(u.first).Seconds(); d > 0 {
		cores = cpuSeconds / d
	}
	return cpuSeconds, cores, u.peakRSS
}

// residentBytes is a process's resident set, 0 if it is gone.
func residentBytes(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return int64(st.ResidentMemory())
}
