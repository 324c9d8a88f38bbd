package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The renewer runs in a child process of its own (this binary with
// -renew-kubeconfig), like the fleet's etcd and kube-apiserver at a lower
// priority: the kubelets it plays run on other machines. In the process that
// scrapes, its 32 workers, their TLS and their garbage delayed the scraper's
// goroutine after each response: the static target's p99 at 5,000 nodes was
// 4.1 ms with the renewer in the scraping process, 3.4 ms without.
//
// The child reports on stdout, one line every statsEvery: renewals done,
// failed, due but not handed out, and the latest start after due since the
// line before.

const statsEvery = 100 * time.Millisecond

// renewerProcess is the parent's view of the child.
type renewerProcess struct {
	cmd      *exec.Cmd
	done     chan struct{}
	started  time.Time
	stopping atomic.Bool

	mu      sync.Mutex
	last    renewStats    // the child's latest counters
	maxLate time.Duration // since resetLate
}

// startRenewerProcess starts bin as the renewer of the leases the
// kubeconfig's control plane holds, at the given priority.
func startRenewerProcess(bin, kubeconfig string, workers int, prio fleetPriority) (*renewerProcess, error) {
	cmd := exec.Command(bin, "-renew-kubeconfig="+kubeconfig, fmt.Sprintf("-renew-workers=%d", workers),
		fmt.Sprintf("-fleet-idle=%t", prio.idle), fmt.Sprintf("-fleet-nice=%d", prio.nice))
	cmd.Stderr = os.Stderr // its progress lines
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the renewer: %w", err)
	}
	r := &renewerProcess{cmd: cmd, done: make(chan struct{}), started: time.Now()}
	go func() {
		r.read(out)
		err := cmd.Wait()
		if !r.stopping.Load() {
			// The report's update rate shows it too; this says when and why.
			progress("renewer (pid %d) ended before the bench did (%v): no more lease updates", cmd.Process.Pid, err)
		}
		close(r.done)
	}()
	return r, nil
}

func (r *renewerProcess) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var s renewStats
		var late int64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %d", &s.done, &s.failed, &s.behind, &late); err != nil {
			progress("renewer: %q: %v", sc.Text(), err)
			continue
		}
		r.mu.Lock()
		r.last = s
		r.maxLate = max(r.maxLate, time.Duration(late))
		r.mu.Unlock()
	}
}

func (r *renewerProcess) total() renewStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.last
	s.at = time.Now()
	s.elapsed = s.at.Sub(r.started)
	s.maxLate = r.maxLate
	return s
}

// resetLate starts a new period for the latest-start figure.
func (r *renewerProcess) resetLate() {
	r.mu.Lock()
	r.maxLate = 0
	r.mu.Unlock()
}

// stop ends the child: SIGTERM to its pid, SIGKILL after 10 s.
func (r *renewerProcess) stop() {
	r.stopping.Store(true)
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		progress("renewer (pid %d) ignored SIGTERM for 10 s; killing it", r.cmd.Process.Pid)
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// runRenewer is the child: it lowers its own priority, renews every lease
// in leaseNamespace until SIGTERM and reports on stdout.
func runRenewer(kubeconfig string, workers int, prio fleetPriority) error {
	if _, err := prio.lower(os.Getpid()); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(protobufConfig(cfg))
	if err != nil {
		return err
	}
	list, err := client.CoordinationV1().Leases(leaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing the leases to renew: %w", err)
	}
	leases := make([]*coordinationv1.Lease, len(list.Items))
	for i := range list.Items {
		leases[i] = &list.Items[i]
	}
	// In a stable order: lease i is due at i/N of each period.
	slices.SortFunc(leases, func(a, b *coordinationv1.Lease) int { return strings.Compare(a.Name, b.Name) })
	r := startRenewer(ctx, client, leases, workers)
	defer r.stop()
	w := bufio.NewWriter(os.Stdout)
	tick := time.NewTicker(statsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		s := r.total()
		r.resetLate()
		fmt.Fprintf(w, "%d %d %d %d\n", s.done, s.failed, s.behind, int64(s.maxLate))
		if err := w.Flush(); err != nil {
			return nil // the parent is gone
		}
	}
}
