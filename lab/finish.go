package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cascade-sre/cascade/rules/incident"
)

// finishIncident waits for the real recovery, then (with AwaitResolve) for
// Cascade to see it and the page to resolve, or Settle more.
func (l *lab) finishIncident(ctx context.Context, deployed <-chan struct{}, res *deployResult) error {
	if !waitUntil(ctx, 15*time.Minute, func() bool { return !l.tl.first(evRecovered, "*").IsZero() }) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no recovery within 15 minutes of the remedy")
	}
	l.noteDeployments(deployed, res)
	if !l.opts.AwaitResolve {
		sleep(ctx, l.opts.Settle)
		return ctx.Err()
	}
	// Cascade's mitigation waits for the root-cause signal to be quiet 5
	// minutes, and the page keeps firing 10 minutes after the last cause.
	ok := waitUntil(ctx, 30*time.Minute, func() bool {
		return l.cascadePhase(incident.Recovery) && !l.tl.first(evPageResolved, "*").IsZero()
	})
	if !ok && ctx.Err() == nil {
		fmt.Fprintln(l.out, "lab: Cascade's recovery or the page's resolution did not come within 30 minutes of the recovery")
	}
	sleep(ctx, l.opts.Settle)
	return ctx.Err()
}

// finishDryRun lets the deployments finish and watches for Settle more:
// nothing may page.
func (l *lab) finishDryRun(ctx context.Context, deployed <-chan struct{}, res *deployResult) error {
	select {
	case <-deployed:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("the dry run's deployments did not finish within 10 minutes (%d accepted)", res.accepted.Load())
	}
	l.noteDeployments(deployed, res)
	sleep(ctx, l.opts.Settle)
	return ctx.Err()
}

func (l *lab) noteDeployments(deployed <-chan struct{}, res *deployResult) {
	select {
	case <-deployed:
		l.tl.add(evDeployDone, "", "deployments done: %d objects accepted after %d retries", res.accepted.Load(), res.retries.Load())
	default:
		l.tl.add(evDeployDone, "", "deployments still going: %d objects accepted so far after %d retries", res.accepted.Load(), res.retries.Load())
	}
}

// cascadePhase reports whether Cascade's journal has an event of phase.
func (l *lab) cascadePhase(phase incident.Phase) bool {
	events, err := incident.Journal(l.journalDir())
	if err != nil {
		return false
	}
	for _, e := range events {
		if e.Phase == phase {
			return true
		}
	}
	return false
}
