package main

import (
	"fmt"
	"runtime"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
)

// rssOf is procstat.ReadMem for reporting only: zero when the process is gone.
func rssOf(pid int) procstat.Mem {
	if pid <= 0 {
		return procstat.Mem{}
	}
	m, _ := procstat.ReadMem(pid)
	return m
}

// machine describes where the numbers were taken.
type machine struct {
	cpus      int
	model     string
	goVersion string
	loadStart string
	loadEnd   string
	// cpuLatencyHeld: idle CPUs polled instead of halting while measuring
	// (see holdCPULatency).
	cpuLatencyHeld bool
}

func describeMachine() machine {
	return machine{cpus: runtime.NumCPU(), model: procstat.CPUModel(), goVersion: runtime.Version(), loadStart: procstat.LoadAverage()}
}

func (m machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %s, load average %s", m.cpus, m.model, m.goVersion, m.loadStart)
}

// idleCPUs says how the CPUs waited when idle.
func (m machine) idleCPUs() string {
	if m.cpuLatencyHeld {
		return "idle CPUs polling (" + cpuLatencyDevice + " held at 0)"
	}
	return "idle CPUs free to halt"
}
