package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/cascade-sre/cascade/demo"
	"github.com/cascade-sre/cascade/scenario"
)

// demoCommand is `cascade demo`: the whole detection on a generated
// incident, with no cluster and no configuration (package demo).
type demoCommand struct {
	cmd      *kingpin.CmdClause
	name     string
	opts     scenario.Options
	speed    float64
	amURL    string
	outDir   string
	timezone string
	// which fleet flags were given, checked as cascade scenario checks them
	nodesSet, clustersSet, clusterSet, regionSet bool
}

func addDemoCommand(app *kingpin.Application) *demoCommand {
	d := &demoCommand{}
	d.cmd = app.Command("demo", "Watch Cascade detect the incident it exists for, with no cluster and no configuration: generate the scenario, ingest it, evaluate the rules at an accelerated clock, print the incident as it unfolds, and end with the post-incident report.")
	d.cmd.Flag("scenario", "Scenario to play (cascade scenario --list): by default the seed's regional outage; incident is a single cluster's own API server OOM; a lookalike shows Cascade staying silent.").Default(demo.DefaultScenario).StringVar(&d.name)
	d.cmd.Flag("nodes", fmt.Sprintf("Fleet size, 1 to %d (default 500); in a regional scenario, the nodes of each cluster (default %d).", scenario.MaxNodes, scenario.DefaultClusterNodes)).
		IsSetByUser(&d.nodesSet).IntVar(&d.opts.Nodes)
	d.cmd.Flag("clusters", fmt.Sprintf("Clusters of a regional scenario, 1 to %d (default %d).", scenario.MaxClusters, scenario.DefaultClusters)).
		IsSetByUser(&d.clustersSet).IntVar(&d.opts.Clusters)
	d.cmd.Flag("cluster", "Value of the cluster label of a single-cluster scenario (default demo).").IsSetByUser(&d.clusterSet).StringVar(&d.opts.Cluster)
	d.cmd.Flag("region", fmt.Sprintf("Value of the region label (default: none; %s for regional scenarios).", scenario.DefaultRegion)).
		IsSetByUser(&d.regionSet).StringVar(&d.opts.Region)
	d.cmd.Flag("speed", "Simulated seconds per real second; 0 runs as fast as the machine can.").Default("300").Float64Var(&d.speed)
	d.cmd.Flag("alertmanager.url", "Send the alerts to this Alertmanager (API v2) as they fire, through the notifier of cascade run, with the wall clock's times; empty: print them only.").StringVar(&d.amURL)
	d.cmd.Flag("output.dir", "Directory for the demo's files: transitions.jsonl (cascade backtest --format json), loki-events.jsonl (the incident events as Loki push streams), truth.json and report.md.").Default("cascade-demo").StringVar(&d.outDir)
	d.cmd.Flag("timezone", "Time zone of the printed times (an IANA name, Local or UTC); empty: CET, as the public timeline.").StringVar(&d.timezone)
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
	d.opts.Interval = 15 * time.Second
	if err := checkScenarioOptions(d.name, d.opts, d.nodesSet, d.clustersSet, d.clusterSet, d.regionSet); err != nil {
		return err
	}
	o := demo.Options{Scenario: d.name, Fleet: d.opts, Speed: d.speed, OutDir: d.outDir}
	if d.amURL != "" {
		u, err := url.Parse(d.amURL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--alertmanager.url %q is not an http(s) URL", d.amURL)
		}
		o.Alertmanager = u
	}
	if d.timezone != "" {
		loc, err := time.LoadLocation(d.timezone)
		if err != nil {
			return fmt.Errorf("--timezone: %w", err)
		}
		o.Location = loc
	}
	// On a terminal the progress line is redrawn in place, cut to its width.
	width := 0
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		width = 80
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			width = w
		}
	}
	_, err := demo.Play(ctx, o, stdout, stderr, width)
	return err
}
