package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// fleetPriority is how far the fleet's processes (etcd, kube-apiserver,
// the lease renewer) stand back from the targets and the scraper. They
// stand in for a control plane and kubelets on other machines: on the
// exporter's node they would not compete with it, or with the scraper, for
// the CPU.
type fleetPriority struct {
	// idle runs them under SCHED_IDLE: a CPU runs them only when no
	// other thread wants it, and a waking target takes it from them at
	// once. At nice 10 they still had a share of every CPU, and the
	// static target's p99 at 1,000 nodes was 1.1-5.0 ms instead of
	// 1.3-2.2.
	idle bool
	// nice is their nice value when not idle (0: leave them competing).
	nice int
}

func (p fleetPriority) String() string {
	if p.idle {
		return "SCHED_IDLE"
	}
	return fmt.Sprintf("nice %d", p.nice)
}

// lower applies p to every thread of process pid; threads the process
// starts later inherit it from the thread that starts them. Both are
// allowed for one's own processes without privileges. It returns how many
// threads it set.
func (p fleetPriority) lower(pid int) (int, error) {
	switch {
	case p.idle:
		return eachThread(pid, func(tid int) error {
			return unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0)
		})
	case p.lowers():
		return eachThread(pid, func(tid int) error {
			return syscall.Setpriority(syscall.PRIO_PROCESS, tid, p.nice)
		})
	}
	return 0, nil
}

// lowers says whether p changes anything.
func (p fleetPriority) lowers() bool { return p.idle || p.nice != 0 }

// eachThread calls set for every thread of process pid, passing over one
// that ends meanwhile, and returns how many it set.
func eachThread(pid int, set func(tid int) error) (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := set(tid); err != nil {
			if err == syscall.ESRCH {
				continue // the thread ended meanwhile
			}
			return n, fmt.Errorf("thread %d of %d: %w", tid, pid, err)
		}
		n++
	}
	return n, nil
}

// lowerFleet applies p to the fleet's etcd and kube-apiserver. Called again
// before the window, for threads started since.
func lowerFleet(n int, pids []int, p fleetPriority) error {
	if !p.lowers() {
		return nil
	}
	threads := 0
	for _, pid := range pids {
		t, err := p.lower(pid)
		if err != nil {
			return fmt.Errorf("lower the priority of %d to %s: %w", pid, p, err)
		}
		threads += t
	}
	progress("[%d] etcd and kube-apiserver at %s (%d threads)", n, p, threads)
	return nil
}
