// Package demo plays a scenario through Cascade with no cluster: it
// generates the scenario's series, evaluates the embedded rules over them
// with the engine of cascade run at an accelerated clock, prints the faults,
// alerts and incident as they unfold, sends the alerts to an Alertmanager if
// asked (through the engine's notifier, on the wall clock), and ends with
// the post-incident report. `cascade demo` is its command line.
package demo

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"time"

	promrules "github.com/prometheus/prometheus/rules"

	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/engine"
	"github.com/cascade-sre/cascade/rules/report"
	"github.com/cascade-sre/cascade/scenario"
)

// DefaultScenario is the seed's shape: a shared regional API whose OOM
// takes down the nodes of most clusters of its region.
const DefaultScenario = "regional-outage"

// Options shape a demo.
type Options struct {
	// Scenario names the scenario (DefaultScenario if empty) and Fleet
	// shapes it.
	Scenario string
	Fleet    scenario.Options
	// Speed is simulated seconds per real second; 0 runs as fast as the
	// machine can.
	Speed float64
	// Alertmanager, if set, receives the alerts as they fire.
	Alertmanager *url.URL
	// OutDir receives the demo's files (created if missing).
	OutDir string
	// Location of the printed times; nil: CET, as the public timeline.
	Location *time.Location
}

// Result is what a demo found.
type Result struct {
	Truth scenario.Truth
	// Pages counts the distinct incident alerts sent: what Alertmanager
	// pages for.
	Pages    int
	Duration time.Duration
}

// Play runs the demo, printing events on out and progress on status (a
// terminal when statusWidth > 0: the progress is then one line redrawn in
// place, cut to that width).
func Play(ctx context.Context, o Options, out, status io.Writer, statusWidth int) (Result, error) {
	o.Scenario = cmp.Or(o.Scenario, DefaultScenario)
	if o.Speed < 0 {
		return Result{}, fmt.Errorf("speed must be 0 or more, not %g", o.Speed)
	}
	loc := cmp.Or(o.Location, time.FixedZone("CET", 3600))
	began := time.Now()

	// 1. The exporters' metric families over the scenario, as the
	// collector would have scraped them, kept gzipped in memory (a tenth of
	// the text), which the backtest reads as it would a .gz file.
	var data bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&data, gzip.BestSpeed)
	text := &countingWriter{w: zw}
	truth, err := scenario.Generate(text, o.Scenario, o.Fleet)
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return Result{Truth: truth}, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return Result{Truth: truth}, err
	}
	fmt.Fprintln(out, header(truth, loc))
	fmt.Fprintf(out, "Generated %.1f MB of exporter series in %s; ingesting them into the TSDB,\nthen evaluating the rules every 15 s of simulated time.\n",
		float64(text.n)/1e6, time.Since(began).Round(time.Millisecond))
	var notifier *engine.Notifier
	if o.Alertmanager != nil {
		if notifier, err = engine.NewNotifier(o.Alertmanager, "http://localhost:9848/demo", slog.New(slog.DiscardHandler)); err != nil {
			return Result{Truth: truth}, err
		}
		defer notifier.Close(5 * time.Second)
		fmt.Fprintf(out, "Alerts go to the Alertmanager at %s.\n", o.Alertmanager)
	} else {
		fmt.Fprintln(out, "No Alertmanager configured (--alertmanager.url): alerts are printed.")
	}
	fmt.Fprintln(out)

	// 2. Ingest and evaluate, paced by the accelerated clock.
	p := newPrinter(out, status, statusWidth, loc, truth)
	var paceStart time.Time
	opts := backtest.Options{
		Progress: func(pr backtest.Progress) {
			if pr.Stage != "evaluate" {
				return
			}
			if paceStart.IsZero() {
				paceStart = time.Now()
			}
			p.flush()
			p.faultsUntil(pr.Time)
			if o.Speed > 0 {
				due := paceStart.Add(time.Duration(float64(pr.Step-1) * 15 / o.Speed * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
			}
			p.progress(pr)
		},
	}
	if notifier != nil {
		opts.Notify = func(ctx context.Context, expr string, alerts ...*promrules.Alert) {
			notifier.Notify(ctx, expr, onTheWallClock(alerts)...)
		}
	}
	var transitions []backtest.Transition
	sum, err := backtest.Run(ctx, &data, opts, func(t backtest.Transition) {
		transitions = append(transitions, t)
		p.transition(t)
	})
	p.flush()
	p.endProgress()
	if err != nil {
		return Result{Truth: truth}, err
	}
	p.faultsUntil(truth.End)

	// 3. The report, as the on-call engineer would get it, and the files.
	in, faults := reportInput(transitions), faultsOf(truth)
	var rep bytes.Buffer
	if err := report.Write(&rep, in, report.Options{Location: loc, Faults: faults}); err != nil {
		return Result{Truth: truth}, err
	}
	fmt.Fprintln(out)
	_, _ = out.Write(rep.Bytes())
	if err := writeFiles(o.OutDir, transitions, truth, rep.Bytes()); err != nil {
		return Result{Truth: truth}, err
	}
	res := Result{Truth: truth, Pages: sum.Notifications[rules.IncidentAlert], Duration: time.Since(began)}
	fmt.Fprintf(out, "\nPages sent: %d. Demo done in %s; its files are in %s/.\n", res.Pages, res.Duration.Round(100*time.Millisecond), o.OutDir)
	return res, nil
}

// header says what is played.
func header(t scenario.Truth, loc *time.Location) string {
	span := fmt.Sprintf("%s to %s (%s)", t.Start.In(loc).Format("2006-01-02 15:04 MST"), t.End.In(loc).Format("15:04 MST"), t.End.Sub(t.Start))
	if t.Clusters > 0 {
		return fmt.Sprintf("Cascade demo: scenario %q, region %q: %d clusters of %d nodes\nand a shared regional API behind a shared gateway, %s.", t.Scenario, t.Region, t.Clusters, t.Nodes, span)
	}
	return fmt.Sprintf("Cascade demo: scenario %q, %d nodes, cluster %q,\n%s.", t.Scenario, t.Nodes, t.Cluster, span)
}

// onTheWallClock moves the alerts' times from the simulated clock to now,
// as if they were evaluated now: Alertmanager takes an alert that ended in
// the past for resolved.
func onTheWallClock(alerts []*promrules.Alert) []*promrules.Alert {
	out := make([]*promrules.Alert, 0, len(alerts))
	now := time.Now()
	for _, a := range alerts {
		c := *a
		shift := now.Sub(a.LastSentAt)
		if a.LastSentAt.IsZero() {
			shift = now.Sub(a.ActiveAt)
		}
		for _, t := range []*time.Time{&c.ActiveAt, &c.FiredAt, &c.ResolvedAt, &c.LastSentAt, &c.ValidUntil, &c.KeepFiringSince} {
			if !t.IsZero() {
				*t = t.Add(shift)
			}
		}
		out = append(out, &c)
	}
	return out
}

// reportInput splits a backtest's transitions into what a report reads.
func reportInput(transitions []backtest.Transition) report.Input {
	var in report.Input
	for _, t := range transitions {
		if t.Event != nil {
			in.Incidents = append(in.Incidents, *t.Event)
		} else {
			in.Alerts = append(in.Alerts, t)
		}
	}
	return in
}

// faultsOf are the scenario's injected faults, as a report shows them.
func faultsOf(truth scenario.Truth) []report.Fault {
	var out []report.Fault
	for _, e := range truth.Events {
		out = append(out, report.Fault{Time: e.Time, Name: e.Name, Detail: e.Detail})
	}
	return out
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
