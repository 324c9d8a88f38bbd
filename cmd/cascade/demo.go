package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	promrules "github.com/prometheus/prometheus/rules"
	"golang.org/x/term"

	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/rules/report"
	"github.com/cascade-sre/cascade/scenario"
)

// demoCommand is `cascade demo`: the whole detection on a generated
// incident, with no cluster and no configuration.
type demoCommand struct {
	cmd      *kingpin.CmdClause
	name     string
	opts     scenario.Options
	speed    float64
	amURL    string
	outDir   string
	timezone string
}

func addDemoCommand(app *kingpin.Application) *demoCommand {
	d := &demoCommand{}
	d.cmd = app.Command("demo", "Watch Cascade detect the incident it exists for, with no cluster and no configuration: generate the scenario, ingest it, evaluate the rules at an accelerated clock, print the incident as it unfolds, and end with the post-incident report.")
	d.cmd.Flag("scenario", "Scenario to play (cascade scenario --list); a lookalike shows Cascade staying silent.").Default("incident").StringVar(&d.name)
	d.cmd.Flag("nodes", fmt.Sprintf("Fleet size, 1 to %d.", scenario.MaxNodes)).Default("500").IntVar(&d.opts.Nodes)
	d.cmd.Flag("speed", "Simulated seconds per real second; 0 runs as fast as the machine can.").Default("300").Float64Var(&d.speed)
	d.cmd.Flag("alertmanager.url", "Send the alerts to this Alertmanager (API v2) as they fire, with the wall clock's times; empty: print them only.").StringVar(&d.amURL)
	d.cmd.Flag("output.dir", "Directory for the demo's files: transitions.jsonl (cascade backtest --format json), loki-events.jsonl (the incident events as Loki push streams), truth.json and report.md.").Default("cascade-demo").StringVar(&d.outDir)
	d.cmd.Flag("timezone", "Time zone of the printed times (an IANA name, Local or UTC); empty: the scenario's own (CET for the incident).").StringVar(&d.timezone)
	return d
}

func (d *demoCommand) run(stdout, stderr io.Writer) int {
	if err := d.play(stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "cascade demo: %v\n", err)
		return 1
	}
	return 0
}

func (d *demoCommand) play(stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d.speed < 0 {
		return fmt.Errorf("--speed must be 0 or more, not %g", d.speed)
	}
	if err := checkNodesFlag(d.opts.Nodes); err != nil {
		return err
	}
	var am *url.URL
	if d.amURL != "" {
		u, err := url.Parse(d.amURL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--alertmanager.url %q is not an http(s) URL", d.amURL)
		}
		am = u
	}
	if err := os.MkdirAll(d.outDir, 0o755); err != nil {
		return err
	}

	// 1. The exporters' metric families over the scenario, as the
	// collector would have scraped them.
	began := time.Now()
	// Kept gzipped in memory: a tenth of the text, which the backtest
	// reads as it would a .gz file.
	var data bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&data, gzip.BestSpeed)
	text := &countingWriter{w: zw}
	truth, err := scenario.Generate(text, d.name, d.opts)
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return err
	}
	// The scenarios start on CET evenings and mornings, as the public
	// timeline does.
	loc := time.FixedZone("CET", 3600)
	if d.timezone != "" {
		if loc, err = time.LoadLocation(d.timezone); err != nil {
			return fmt.Errorf("--timezone: %w", err)
		}
	}
	fmt.Fprintf(stdout, "Cascade demo: scenario %q, %d nodes, cluster %q, %s to %s (%s).\n", truth.Scenario, truth.Nodes, truth.Cluster,
		truth.Start.In(loc).Format("2006-01-02 15:04 MST"), truth.End.In(loc).Format("15:04 MST"), truth.End.Sub(truth.Start))
	fmt.Fprintf(stdout, "Generated %.1f MB of exporter series in %s; ingesting them into the TSDB,\nthen evaluating the rules every 15 s of simulated time.\n",
		float64(text.n)/1e6, time.Since(began).Round(time.Millisecond))
	if am != nil {
		fmt.Fprintf(stdout, "Alerts go to the Alertmanager at %s.\n", am)
	} else {
		fmt.Fprintln(stdout, "No Alertmanager configured (--alertmanager.url): alerts are printed.")
	}
	fmt.Fprintln(stdout)

	files, err := openDemoFiles(d.outDir)
	if err != nil {
		return err
	}
	defer files.close()

	// 2. Ingest and evaluate, paced by the accelerated clock.
	p := newDemoPrinter(stdout, stderr, loc, truth)
	var paceStart time.Time
	opts := backtest.Options{
		Progress: func(pr backtest.Progress) {
			if pr.Stage != "evaluate" {
				return
			}
			if paceStart.IsZero() {
				paceStart = time.Now()
			}
			p.faultsUntil(pr.Time)
			if d.speed > 0 {
				due := paceStart.Add(time.Duration(float64(pr.Step-1) * 15 / d.speed * float64(time.Second)))
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
	var sendErrs int
	if am != nil {
		opts.Notify = func(ctx context.Context, _ string, alerts ...*promrules.Alert) {
			if err := postAlerts(ctx, am, alerts); err != nil {
				sendErrs++
				if sendErrs == 1 {
					fmt.Fprintf(stderr, "cascade demo: cannot send alerts to Alertmanager: %v\n", err)
				}
			}
		}
	}
	var transitions []backtest.Transition
	sum, err := backtest.Run(ctx, &data, opts, func(t backtest.Transition) {
		transitions = append(transitions, t)
		files.transition(t)
		p.transition(t)
	})
	p.endProgress()
	if err != nil {
		return err
	}
	p.faultsUntil(truth.End)

	// 3. The report, as the on-call engineer would get it.
	fmt.Fprintln(stdout)
	var rep bytes.Buffer
	if err := report.Write(&rep, reportInput(transitions), report.Options{Location: loc, Faults: faults(truth)}); err != nil {
		return err
	}
	_, _ = stdout.Write(rep.Bytes())
	if err := files.finish(truth, rep.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nPages sent: %d. Demo done in %s; its files are in %s/.\n",
		sum.Notifications[incident.AlertName], time.Since(began).Round(100*time.Millisecond), d.outDir)
	if sendErrs > 0 {
		return fmt.Errorf("%d batches of alerts could not be sent to Alertmanager", sendErrs)
	}
	return nil
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

// faults are the scenario's injected faults, as a report shows them.
func faults(truth scenario.Truth) []report.Fault {
	var out []report.Fault
	for _, e := range truth.Events {
		out = append(out, report.Fault{Time: e.Time, Name: e.Name, Detail: e.Detail})
	}
	return out
}

// demoPrinter prints the incident as it unfolds: events on out, progress
// on status. On a terminal (both go to the same screen) the progress is one
// line redrawn in place, cut to the terminal's width; an event clears it,
// takes its place, and the progress is drawn again below.
type demoPrinter struct {
	out         io.Writer
	status      io.Writer
	live        bool   // status is a terminal
	width       int    // of that terminal
	bar         string // the progress line on the screen now, if any
	loc         *time.Location
	truth       scenario.Truth
	faultsShown int
	firing      map[string]bool // alerts firing, by name and labels
	incident    string          // phase of the open incident
	lastTenth   int             // of the progress written without a terminal
}

func newDemoPrinter(out, status io.Writer, loc *time.Location, truth scenario.Truth) *demoPrinter {
	p := &demoPrinter{out: out, status: status, loc: loc, truth: truth, firing: map[string]bool{}}
	if f, ok := status.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.live = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			p.width = w
		} else {
			p.width = 80
		}
	}
	return p
}

// clearLine is a carriage return and ANSI "erase the whole line".
const clearLine = "\r\x1b[2K"

func (p *demoPrinter) line(t time.Time, kind, text string) {
	if p.bar != "" {
		fmt.Fprint(p.status, clearLine)
	}
	fmt.Fprintf(p.out, "%s  %-9s %s\n", t.In(p.loc).Format("15:04:05"), kind, text)
	if p.bar != "" {
		fmt.Fprint(p.status, p.bar)
	}
}

// faultsUntil prints the injected faults up to t, from the ground truth:
// the demo knows what it injected, Cascade does not.
func (p *demoPrinter) faultsUntil(t time.Time) {
	for p.faultsShown < len(p.truth.Events) && !p.truth.Events[p.faultsShown].Time.After(t) {
		e := p.truth.Events[p.faultsShown]
		text := e.Name
		if e.Detail != "" {
			text += ": " + e.Detail
		}
		p.line(e.Time, "injected", text)
		p.faultsShown++
	}
}

func (p *demoPrinter) transition(t backtest.Transition) {
	p.faultsUntil(t.Time)
	key := t.Name + fmt.Sprint(t.Labels)
	if t.Kind == backtest.KindIncident {
		e := t.Event
		switch e.Phase {
		case incident.ClusterHit, incident.ClusterRecovered:
			p.line(t.Time, "INCIDENT", fmt.Sprintf("%s %s", strings.ReplaceAll(strings.ToUpper(string(e.Phase)), "_", " "), e.Cluster))
			return
		case incident.Resolved:
			p.incident = ""
		default:
			p.incident = string(e.Phase)
		}
		text := fmt.Sprintf("%s %s, root cause %s", strings.ToUpper(string(e.Phase)), t.Name, e.RootCause)
		if e.Phase == incident.Escalation {
			text += "  → PAGE"
		}
		p.line(t.Time, "INCIDENT", text)
		return
	}
	switch t.State {
	case "firing":
		p.firing[key] = true
	case "inactive":
		if !p.firing[key] {
			return // pending that never fired: nobody hears of it
		}
		delete(p.firing, key)
	default:
		return
	}
	text := fmt.Sprintf("%s %s", t.Name, t.State)
	if r := t.Labels["replica"]; r != "" {
		text += " (" + r + ")"
	}
	switch {
	case t.Name == incident.AlertName:
		return // told as the incident
	case t.Labels["cascade_symptom"] == "true" && p.incident != "" && t.State == "firing":
		text += "  (inhibited in Alertmanager: part of the incident)"
	case t.Labels["cascade_guard"] == "true" && t.State == "firing":
		text += "  → automation: stop auto-healing nodes"
	}
	p.line(t.Time, "alert", text)
}

// progress redraws the progress line on a terminal; elsewhere (a log, a
// pipe) it writes one line at every tenth of the way.
func (p *demoPrinter) progress(pr backtest.Progress) {
	percent := 100 * pr.Step / pr.Steps
	if !p.live && (percent/10 == p.lastTenth || percent%10 != 0) {
		return
	}
	p.lastTenth = percent / 10
	const width = 30
	done := width * pr.Step / pr.Steps
	state := "no incident"
	if p.incident != "" {
		state = "incident: " + p.incident
	}
	line := fmt.Sprintf("[%s%s] %s  %3d%%  %d alerts firing, %s", strings.Repeat("#", done), strings.Repeat(".", width-done),
		pr.Time.In(p.loc).Format("15:04:05"), percent, len(p.firing), state)
	if !p.live {
		fmt.Fprintln(p.status, line)
		return
	}
	// One column short of the width: a line that fills the last column
	// wraps on some terminals, and \r would then go back to the wrong line.
	if r := []rune(line); len(r) >= p.width {
		line = string(r[:max(p.width-1, 0)])
	}
	p.bar = line
	fmt.Fprint(p.status, clearLine+line)
}

// endProgress ends the progress line on a terminal, so what follows starts
// on a line of its own.
func (p *demoPrinter) endProgress() {
	if p.bar != "" {
		fmt.Fprintln(p.status)
		p.bar = ""
	}
}

// demoFiles are what the demo leaves behind.
type demoFiles struct {
	dir         string
	transitions *os.File
	loki        *os.File
}

func openDemoFiles(dir string) (*demoFiles, error) {
	t, err := os.Create(filepath.Join(dir, "transitions.jsonl"))
	if err != nil {
		return nil, err
	}
	l, err := os.Create(filepath.Join(dir, "loki-events.jsonl"))
	if err != nil {
		t.Close()
		return nil, err
	}
	return &demoFiles{dir: dir, transitions: t, loki: l}, nil
}

func (f *demoFiles) transition(t backtest.Transition) {
	_ = json.NewEncoder(f.transitions).Encode(t)
	if t.Kind != backtest.KindIncident {
		return
	}
	// The push the Loki sink of cascade run would make for this event.
	labels, line := t.Event.LokiStream()
	stream := map[string]string{}
	for k, v := range labels {
		stream[string(k)] = string(v)
	}
	_ = json.NewEncoder(f.loki).Encode(map[string]any{
		"streams": []any{map[string]any{"stream": stream, "values": [][2]string{{strconv.FormatInt(t.Time.UnixNano(), 10), line}}}},
	})
}

func (f *demoFiles) finish(truth scenario.Truth, rep []byte) error {
	b, _ := json.MarshalIndent(truth, "", "  ")
	if err := os.WriteFile(filepath.Join(f.dir, "truth.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.dir, "report.md"), rep, 0o644)
}

func (f *demoFiles) close() {
	f.transitions.Close()
	f.loki.Close()
}

// amAlert is an alert in Alertmanager's API v2.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// postAlerts sends alerts to Alertmanager on the wall clock: firing ones
// start now and hold for 5 minutes unless resent, resolved ones end now.
func postAlerts(ctx context.Context, am *url.URL, alerts []*promrules.Alert) error {
	now := time.Now()
	var out []amAlert
	for _, a := range alerts {
		al := amAlert{Labels: a.Labels.Map(), Annotations: a.Annotations.Map(), StartsAt: now, EndsAt: now.Add(5 * time.Minute),
			GeneratorURL: "http://localhost:9848/demo"}
		if a.State != promrules.StateFiring {
			al.EndsAt = now
		}
		out = append(out, al)
	}
	body, _ := json.Marshal(out)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, am.JoinPath("/api/v2/alerts").String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
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
