package main

import (
	"encoding/binary"
	"fmt"
	"os"
)

// cpuLatencyDevice is the kernel's PM QoS interface for the CPUs' wake-up
// latency (Documentation/power/pm_qos_interface.rst).
const cpuLatencyDevice = "/dev/cpu_dma_latency"

// holdCPULatency asks the kernel, through the PM QoS device at path, to let
// no CPU wait in an idle state that takes longer than 0 µs to leave, until
// the returned file is closed: idle CPUs poll instead of halting. On a
// virtual machine a halted virtual CPU is woken by the host, which can take
// milliseconds: traced with `perf sched timehist`, a target's thread that
// was ready to answer waited 3.2 ms for an idle CPU, and the static target,
// which does nothing, had a p99 of 2.1-2.2 ms against 0.8-1.2 with this
// held. It is every target's delay, not theirs, so the bench holds it for
// all of them alike; it needs root (the device is the kernel's, mode 0600).
func holdCPULatency(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	// The request is a binary 32-bit value in microseconds, held as long
	// as the file stays open.
	if err := binary.Write(f, binary.NativeEndian, int32(0)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
