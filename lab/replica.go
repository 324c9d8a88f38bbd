package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// service is one replica of a server the lab runs under a memory limit:
// kube-apiserver, or the regional API. Start starts it (again) and waits
// until it is ready; Process is its current process.
type service interface {
	Start(timeout time.Duration) error
	Process() *testenv.Process
}

// replica keeps a service running under its memory limit the way a
// kubelet keeps a static pod running: whenever it dies it is started
// again, after the crash-loop back-off (10 s, doubling to 5 min, reset
// after 10 minutes up). Each death goes into the timeline, and an OOM kill
// is one only when the limit's own count of kills rose (the kernel's
// oom_kill, or the supervisor's).
type replica struct {
	name, cluster string
	svc           service
	mem           testenv.MemoryLimit
	lab           *lab
	startTimeout  time.Duration

	kick chan struct{}

	mu       sync.Mutex
	kills    int64
	deaths   int
	up       bool
	upSince  time.Time
	stopping bool
}

func newReplica(l *lab, name, cluster string, svc service, mem testenv.MemoryLimit) *replica {
	return &replica{name: name, cluster: cluster, svc: svc, mem: mem, lab: l, startTimeout: 3 * time.Minute, kick: make(chan struct{}, 1)}
}

// run starts the replica and keeps it running until ctx ends.
func (r *replica) run(ctx context.Context) {
	backoff := 10 * time.Second
	for ctx.Err() == nil {
		err := r.svc.Start(r.startTimeout)
		p := r.svc.Process()
		if p == nil {
			r.lab.tl.add("error", r.cluster, "%s cannot start: %v", r.name, err)
			return
		}
		if err == nil {
			r.mu.Lock()
			r.up, r.upSince = true, time.Now()
			deaths := r.deaths
			r.mu.Unlock()
			if deaths > 0 {
				r.lab.tl.add(evRestart, r.cluster, "%s back up (pid %d) under a %s limit", r.name, p.Pid(), mib(r.mem.Limit()))
			}
		}
		select {
		case <-p.Done():
		case <-ctx.Done():
			return
		}
		r.mu.Lock()
		ranFor := time.Since(r.upSince)
		wasUp := r.up
		r.up = false
		r.mu.Unlock()
		if ctx.Err() != nil || r.isStopping() {
			return
		}
		r.died(wasUp)
		if wasUp && ranFor > 10*time.Minute {
			backoff = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-r.kick:
		}
		backoff = min(2*backoff, 5*time.Minute)
	}
}

// died records a death: an OOM kill when the limit counted one.
func (r *replica) died(wasUp bool) {
	kills, err := r.mem.Kills()
	r.mu.Lock()
	r.deaths++
	newKill := err == nil && kills > r.kills
	if newKill {
		r.kills = kills
	}
	r.mu.Unlock()
	when := "while serving"
	if !wasUp {
		when = "while starting"
	}
	if !newKill {
		r.lab.tl.add(evRestart, r.cluster, "%s exited %s, not at its memory limit (see its log)", r.name, when)
		return
	}
	killer := "the kernel's OOM killer (cgroup oom_kill " + fmt.Sprint(kills) + ")"
	if r.mem.CgroupDir() == "" {
		killer = "the lab's memory supervisor (no memory cgroup on this machine)"
	}
	r.lab.oomMu.Lock()
	defer r.lab.oomMu.Unlock()
	name := evOOMKill
	if r.lab.tl.first(evFirstOOM, "*").IsZero() {
		name = evFirstOOM
	}
	r.lab.tl.add(name, r.cluster, "%s OOM-killed %s at its %s limit, by %s", r.name, when, mib(r.mem.Limit()), killer)
}

// raise is the remedy: a higher limit, and a restart now if it is down.
func (r *replica) raise(limit int64) error {
	if err := r.mem.SetLimit(limit); err != nil {
		return err
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return nil
}

// isUp reports whether the replica is serving.
func (r *replica) isUp() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// stop keeps run from restarting it; the caller stops the process.
func (r *replica) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping = true
}

func (r *replica) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// runReplica runs r until the lab ends; at the end it is stopped for good:
// no restart, its process killed until its loop has returned.
func (l *lab) runReplica(ctx context.Context, r *replica) *replica {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	l.atExit(func() {
		r.stop()
		for {
			if p := r.svc.Process(); p != nil {
				p.Stop()
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return r
}
