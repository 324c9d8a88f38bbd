package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// renewer plays the kubelets: it renews every lease once per renewPeriod,
// spread evenly over the period (lease i is due at i/N of it), through a
// bounded pool of workers. When the control plane cannot keep up the queue
// fills, the dispatcher falls behind, and the achieved rate shows it: it
// never skips a renewal to look on time.
type renewer struct {
	client  kubernetes.Interface
	leases  []*coordinationv1.Lease // latest version of each, guarded by locks[i]
	locks   []sync.Mutex
	started time.Time

	done    atomic.Int64 // renewals completed
	failed  atomic.Int64 // renewals that returned an error
	behind  atomic.Int64 // renewals due but not yet handed to a worker
	maxLate atomic.Int64 // the most a renewal started after it was due, ns, since resetLate

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startRenewer(ctx context.Context, client kubernetes.Interface, leases []*coordinationv1.Lease, workers int) *renewer {
	ctx, cancel := context.WithCancel(ctx)
	r := &renewer{client: client, leases: leases, locks: make([]sync.Mutex, len(leases)), started: time.Now(), cancel: cancel}
	// A queue of one period's renewals: more would only hide a backlog.
	jobs := make(chan renewal, len(leases))
	for range workers {
		r.wg.Go(func() { r.work(ctx, jobs) })
	}
	r.wg.Go(func() { r.dispatch(ctx, jobs) })
	progress("[%d] renewing every lease each %s: %.0f updates/s from %d workers", len(leases), renewPeriod, r.targetRate(), workers)
	return r
}

type renewal struct {
	lease int
	due   time.Time
}

// dispatch hands out renewals as they fall due.
func (r *renewer) dispatch(ctx context.Context, jobs chan<- renewal) {
	n := len(r.leases)
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for sent := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		due := int(time.Since(r.started) * time.Duration(n) / renewPeriod)
		r.behind.Store(int64(due - sent))
		for ; sent < due; sent++ {
			job := renewal{lease: sent % n, due: r.started.Add(time.Duration(sent) * renewPeriod / time.Duration(n))}
			select {
			case jobs <- job:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (r *renewer) work(ctx context.Context, jobs <-chan renewal) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-jobs:
			late := time.Since(job.due)
			for old := r.maxLate.Load(); int64(late) > old && !r.maxLate.CompareAndSwap(old, int64(late)); old = r.maxLate.Load() {
			}
			if err := r.renew(ctx, job.lease); err != nil {
				if ctx.Err() != nil {
					return
				}
				if r.failed.Add(1) <= 3 {
					progress("renewing lease %d: %v", job.lease, err)
				}
				continue
			}
			r.done.Add(1)
		}
	}
}

// renew updates one lease's renewTime as the kubelet does: an Update of the
// copy it holds, re-read once on a conflict.
func (r *renewer) renew(ctx context.Context, i int) error {
	r.locks[i].Lock()
	defer r.locks[i].Unlock()
	api := r.client.CoordinationV1().Leases(leaseNamespace)
	l := r.leases[i].DeepCopy()
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	updated, err := api.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		if l, err = api.Get(ctx, l.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		l.Spec.RenewTime = &now
		updated, err = api.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	r.leases[i] = updated
	return nil
}

// resetLate starts a new period for the latest-start figure, so a window
// reports its own lateness and not the startup's.
func (r *renewer) resetLate() { r.maxLate.Store(0) }

func (r *renewer) stop() {
	r.cancel()
	r.wg.Wait()
}

func (r *renewer) targetRate() float64 { return float64(len(r.leases)) / renewPeriod.Seconds() }

// renewStats is a snapshot of the renewer, or the difference of two.
type renewStats struct {
	at      time.Time
	elapsed time.Duration
	done    int64
	failed  int64
	behind  int64
	maxLate time.Duration // since the last resetLate
}

func (r *renewer) total() renewStats {
	return renewStats{
		at:      time.Now(),
		elapsed: time.Since(r.started),
		done:    r.done.Load(),
		failed:  r.failed.Load(),
		behind:  r.behind.Load(),
		maxLate: time.Duration(r.maxLate.Load()),
	}
}

// since is what happened between an earlier snapshot and s. The backlog is
// the one at the end.
func (s renewStats) since(earlier renewStats) renewStats {
	return renewStats{
		at:      s.at,
		elapsed: s.at.Sub(earlier.at),
		done:    s.done - earlier.done,
		failed:  s.failed - earlier.failed,
		behind:  s.behind,
		maxLate: s.maxLate,
	}
}

func (s renewStats) rate() float64 { return float64(s.done) / s.elapsed.Seconds() }

// keptUp is whether the control plane took the kubelets' rate: 95% of it
// and no backlog worth a second of renewals.
func (s renewStats) keptUp(n int) bool {
	target := float64(n) / renewPeriod.Seconds()
	return s.rate() >= 0.95*target && float64(s.behind) < target
}

func (s renewStats) rateString(n int) string {
	target := float64(n) / renewPeriod.Seconds()
	verdict := "kept up"
	if !s.keptUp(n) {
		verdict = "CONTROL PLANE DID NOT KEEP UP"
	}
	return fmt.Sprintf("%.0f/s of %.0f/s wanted (%s; %d failed, backlog %d)",
		s.rate(), target, verdict, s.failed, s.behind)
}

// windowString adds how late the latest renewal of a window started.
func (s renewStats) windowString(n int) string {
	return fmt.Sprintf("%s, latest start %s after due", s.rateString(n), s.maxLate.Round(time.Millisecond))
}
