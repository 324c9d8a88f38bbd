package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// renice sets the nice value of every thread of process pid, as renice(1)
// does; threads the process starts later inherit it from the thread that
// starts them. A higher value (lower priority) is allowed for one's own
// processes without privileges. It returns how many threads it set.
func renice(pid, nice int) (int, error) {
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
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			if err == syscall.ESRCH {
				continue // the thread ended meanwhile
			}
			return n, fmt.Errorf("renice thread %d of %d: %w", tid, pid, err)
		}
		n++
	}
	return n, nil
}

// reniceFleet lowers the priority of the fleet's etcd and kube-apiserver.
// They stand in for a control plane that runs on other machines: on the
// exporter's node they would not compete with it, or with the scraper, for
// the CPU. Called again before the window, for threads started since.
func reniceFleet(n int, pids []int, nice int) error {
	if nice == 0 {
		return nil
	}
	threads := 0
	for _, pid := range pids {
		t, err := renice(pid, nice)
		if err != nil {
			return err
		}
		threads += t
	}
	progress("[%d] etcd and kube-apiserver at nice %d (%d threads)", n, nice, threads)
	return nil
}
