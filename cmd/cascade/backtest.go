package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/report"
	"github.com/cascade-sre/cascade/scenario"
)

// replayCommands are `cascade scenario`, `cascade backtest` and `cascade
// report`: generate data, run the rules over it, write the timeline.
type replayCommands struct {
	scenario     *kingpin.CmdClause
	scenarioName string
	scenarioList bool
	scenarioOpts scenario.Options
	scenarioOut  string
	truthOut     string
	scenarioFrom string
	// which scenario flags were given, to refuse 0 and "" instead of
	// taking them for the defaults
	nodesSet, clustersSet, clusterSet, regionSet bool

	backtest *kingpin.CmdClause
	data     string
	format   string
	btOpts   backtest.Options
	timezone string

	report       *kingpin.CmdClause
	events       string
	truthIn      string
	reportZone   string
	reportOutput string
}

func addReplayCommands(app *kingpin.Application) *replayCommands {
	c := &replayCommands{}
	c.scenario = app.Command("scenario", "Write a scenario's series (OpenMetrics text with timestamps, the input of cascade backtest and of promtool tsdb create-blocks-from openmetrics) and its ground truth.")
	c.scenario.Arg("name", "Scenario name (see --list).").StringVar(&c.scenarioName)
	c.scenario.Flag("list", "List the scenarios and exit.").BoolVar(&c.scenarioList)
	c.scenario.Flag("nodes", fmt.Sprintf("Fleet size, 1 to %d (default 500); in a regional scenario, the nodes of each cluster (default %d; %d in all at most).", scenario.MaxNodes, scenario.DefaultClusterNodes, scenario.MaxRegionNodes)).
		IsSetByUser(&c.nodesSet).IntVar(&c.scenarioOpts.Nodes)
	c.scenario.Flag("cluster", "Value of the cluster label of a single-cluster scenario (default demo); regional scenarios name their clusters cluster-000, cluster-001...").
		IsSetByUser(&c.clusterSet).StringVar(&c.scenarioOpts.Cluster)
	c.scenario.Flag("clusters", fmt.Sprintf("Clusters of a regional scenario, 1 to %d (default %d).", scenario.MaxClusters, scenario.DefaultClusters)).
		IsSetByUser(&c.clustersSet).IntVar(&c.scenarioOpts.Clusters)
	c.scenario.Flag("region", fmt.Sprintf("Value of the region label (default: none; %s for regional scenarios).", scenario.DefaultRegion)).
		IsSetByUser(&c.regionSet).StringVar(&c.scenarioOpts.Region)
	c.scenario.Flag("start", "Start time (RFC 3339); empty: the scenario's own (the incident starts at 23:18 CET).").StringVar(&c.scenarioFrom)
	c.scenario.Flag("scrape-interval", "Scrape interval of the generated series.").Default("15s").DurationVar(&c.scenarioOpts.Interval)
	c.scenario.Flag("seed", "Seed of the noise; the same seed gives the same data.").Default("1").Uint64Var(&c.scenarioOpts.Seed)
	c.scenario.Flag("no-per-node-series", "Leave out the per-node lease series, as the exporter's --no-nodelease.per-node-series does.").BoolVar(&c.scenarioOpts.NoPerNodeSeries)
	c.scenario.Flag("output", "File to write (gzip if it ends in .gz); empty or -: standard output. Written whole or not at all.").Short('o').StringVar(&c.scenarioOut)
	c.scenario.Flag("truth", "Also write the ground truth as JSON to this file; - writes it to standard output (then give -o).").StringVar(&c.truthOut)

	c.backtest = app.Command("backtest", "Evaluate the rule files over recorded series with the engine of cascade run, and print every alert transition and incident event with its time.")
	c.backtest.Flag("data", "OpenMetrics text with timestamps (or a gzip of it); - reads standard input.").Required().StringVar(&c.data)
	c.backtest.Flag("format", "Output: text for people, json for one JSON object per line (time, kind, name, state, labels, and phase and root_cause for incidents).").Default("text").EnumVar(&c.format, "text", "json")
	c.backtest.Flag("rule-file", "Rule file (or glob) to evaluate instead of the embedded ones; repeatable.").StringsVar(&c.btOpts.RuleFiles)
	c.backtest.Flag("eval-interval", "Rule evaluation interval.").Default("15s").DurationVar(&c.btOpts.Interval)
	c.backtest.Flag("scrape-interval", "Interval the data was scraped at: a series silent for twice as long is marked stale, as Prometheus does.").Default("15s").DurationVar(&c.btOpts.ScrapeInterval)
	c.backtest.Flag("tsdb.path", "Keep the TSDB (raw series, recording rules, ALERTS) in this empty or new directory, as blocks Prometheus can open; empty: a temporary one.").StringVar(&c.btOpts.TSDBPath)
	c.backtest.Flag("timezone", "Time zone of the text output (an IANA name, Local or UTC).").Default("UTC").StringVar(&c.timezone)

	c.report = app.Command("report", "Write the post-incident timeline in Markdown from incident events: cascade backtest --format json output, or the events.jsonl journal of cascade run.")
	c.report.Flag("events", "Events file (JSON lines); - reads standard input.").Required().StringVar(&c.events)
	c.report.Flag("truth", "Ground truth of a scenario (cascade scenario --truth): adds the injected faults and measures detection from the first one; - reads standard input.").StringVar(&c.truthIn)
	c.report.Flag("timezone", "Time zone of the timeline (an IANA name, Local or UTC).").Default("UTC").StringVar(&c.reportZone)
	c.report.Flag("output", "File to write; empty or -: standard output.").Short('o').StringVar(&c.reportOutput)
	return c
}

func (c *replayCommands) dispatch(cmd string, stdout, stderr io.Writer) (int, bool) {
	var err error
	switch cmd {
	case c.scenario.FullCommand():
		err = c.runScenario(stdout)
	case c.backtest.FullCommand():
		err = c.runBacktest(stdout, stderr)
	case c.report.FullCommand():
		err = c.runReport(stdout)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "cascade %s: %v\n", cmd, err)
		return 1, true
	}
	return 0, true
}

func (c *replayCommands) runScenario(stdout io.Writer) error {
	if c.scenarioList {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, s := range scenario.List() {
			kind := "lookalike"
			if s.Incident {
				kind = s.Scope + " incident"
			}
			shape := "one cluster"
			if s.Regional {
				shape = "region"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, shape, kind, s.Summary)
		}
		return tw.Flush()
	}
	if c.scenarioName == "" {
		return errors.New("name a scenario (cascade scenario --list names them)")
	}
	if err := c.checkScenarioFlags(); err != nil {
		return err
	}
	if c.scenarioFrom != "" {
		t, err := time.Parse(time.RFC3339, c.scenarioFrom)
		if err != nil {
			return fmt.Errorf("--start: %w", err)
		}
		c.scenarioOpts.Start = t
	}
	if c.truthOut == "-" && (c.scenarioOut == "" || c.scenarioOut == "-") {
		return errors.New("--truth - and the data would both go to standard output: write the data to a file with -o")
	}
	var truth scenario.Truth
	write := func(w io.Writer) (err error) {
		truth, err = scenario.Generate(w, c.scenarioName, c.scenarioOpts)
		return err
	}
	if err := writeOutput(c.scenarioOut, stdout, strings.HasSuffix(c.scenarioOut, ".gz"), write); err != nil {
		return err
	}
	if c.truthOut == "" {
		return nil
	}
	return writeOutput(c.truthOut, stdout, false, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(truth)
	})
}

// checkScenarioFlags refuses values of the scenario flags that the
// scenario package would take for "the default", and flags that do not
// apply to the scenario: given on the command line, 0 nodes or an empty
// cluster is a mistake, not a wish for the default, and --cluster of a
// regional scenario would be ignored.
func (c *replayCommands) checkScenarioFlags() error {
	return checkScenarioOptions(c.scenarioName, c.scenarioOpts, c.nodesSet, c.clustersSet, c.clusterSet, c.regionSet)
}

// checkScenarioOptions checks the flags of scenario and demo that were set.
func checkScenarioOptions(name string, o scenario.Options, nodesSet, clustersSet, clusterSet, regionSet bool) error {
	regional := false
	for _, info := range scenario.List() {
		if info.Name == name {
			regional = info.Regional
		}
	}
	switch {
	case nodesSet && regional && (o.Nodes < 1 || o.Nodes > scenario.MaxRegionNodes):
		return fmt.Errorf("--nodes must be between 1 and %d, not %d", scenario.MaxRegionNodes, o.Nodes)
	case nodesSet && !regional && (o.Nodes < 1 || o.Nodes > scenario.MaxNodes):
		return fmt.Errorf("--nodes must be between 1 and %d, not %d", scenario.MaxNodes, o.Nodes)
	case clusterSet && regional:
		return fmt.Errorf("--cluster names the cluster of a single-cluster scenario; %s names its clusters cluster-000, cluster-001...", name)
	case clusterSet && o.Cluster == "":
		return errors.New("--cluster must not be empty")
	case clustersSet && !regional:
		return fmt.Errorf("--clusters is for the regional scenarios; %s is a single cluster", name)
	case clustersSet && (o.Clusters < 1 || o.Clusters > scenario.MaxClusters):
		return fmt.Errorf("--clusters must be between 1 and %d, not %d", scenario.MaxClusters, o.Clusters)
	case regionSet && o.Region == "":
		return errors.New("--region must not be empty (leave it out for no region label)")
	case o.Interval < scenario.MinInterval || o.Interval > scenario.MaxInterval:
		return fmt.Errorf("--scrape-interval must be between %s and %s, not %s", scenario.MinInterval, scenario.MaxInterval, o.Interval)
	}
	return nil
}

// writeOutput writes what write produces to stdout when path is empty or
// "-", else to the file at path through atomicfile: a regular file whole or
// not at all, a special one (a FIFO, a terminal) written through. gz
// compresses what is written.
func writeOutput(path string, stdout io.Writer, gz bool, write func(io.Writer) error) error {
	if gz {
		write = gzipped(write)
	}
	if path == "" || path == "-" {
		return write(stdout)
	}
	return atomicfile.Write(path, 0o644, write)
}

// gzipped wraps write so that what it writes is gzip-compressed.
func gzipped(write func(io.Writer) error) func(io.Writer) error {
	return func(w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		if err := write(zw); err != nil {
			return err
		}
		return zw.Close()
	}
}

func openInput(name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), 0, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (c *replayCommands) runBacktest(stdout, stderr io.Writer) error {
	loc, err := time.LoadLocation(c.timezone)
	if err != nil {
		return fmt.Errorf("--timezone: %w", err)
	}
	in, _, err := openInput(c.data)
	if err != nil {
		return err
	}
	defer in.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c.btOpts.Progress = progressPrinter(stderr)
	var emit func(backtest.Transition)
	enc := json.NewEncoder(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if c.format == "json" {
		emit = func(t backtest.Transition) { _ = enc.Encode(t) }
	} else {
		// The header comes with the first transition: on bad input, which
		// fails before any, nothing is printed.
		header := false
		emit = func(t backtest.Transition) {
			if !header {
				fmt.Fprintln(tw, "TIME\tKIND\tNAME\tSTATE\tLABELS")
				header = true
			}
			fmt.Fprintln(tw, transitionLine(t, loc))
		}
	}
	sum, err := backtest.Run(ctx, in, c.btOpts, emit)
	if err != nil {
		if c.format == "text" {
			_ = tw.Flush()
		}
		return err
	}
	if c.format == "text" {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "backtest: %d samples in %d series (%d stale markers), %s to %s, %d evaluations; loaded in %s, evaluated in %s; notifications: %s\n",
		sum.Load.Samples, sum.Load.Series, sum.Load.StaleMarkers, sum.Start.Format(time.RFC3339), sum.End.Format(time.RFC3339), sum.Steps,
		sum.LoadDuration.Round(time.Millisecond), sum.EvalDuration.Round(time.Millisecond), notificationList(sum.Notifications))
	return nil
}

// transitionLine is a transition for people, tab-separated.
func transitionLine(t backtest.Transition, loc *time.Location) string {
	names := make([]string, 0, len(t.Labels))
	for k := range t.Labels {
		if k != "alertname" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var labels []string
	for _, k := range names {
		labels = append(labels, k+"="+t.Labels[k])
	}
	state := t.State
	if t.Kind == backtest.KindIncident {
		state = strings.ToUpper(t.State)
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", t.Time.In(loc).Format("2006-01-02 15:04:05 MST"), t.Kind, t.Name, state, strings.Join(labels, " "))
}

func notificationList(n map[string]int) string {
	if len(n) == 0 {
		return "none"
	}
	var parts []string
	for name, count := range n {
		parts = append(parts, fmt.Sprintf("%s=%d", name, count))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// progressPrinter reports loading and evaluation on stderr, at most every
// two seconds, so long data shows it is moving.
func progressPrinter(stderr io.Writer) func(backtest.Progress) {
	var last time.Time
	started := time.Now()
	return func(p backtest.Progress) {
		final := p.Stage == "evaluate" && p.Step == p.Steps
		if time.Since(last) < 2*time.Second && !(final && time.Since(started) > 2*time.Second) {
			return
		}
		last = time.Now()
		switch p.Stage {
		case "load":
			fmt.Fprintf(stderr, "backtest: loading: %d lines, %d samples, %d series\n", p.Load.Lines, p.Load.Samples, p.Load.Series)
		default:
			fmt.Fprintf(stderr, "backtest: evaluating: step %d of %d (%.0f %%)\n", p.Step, p.Steps, 100*float64(p.Step)/float64(p.Steps))
		}
	}
}

func (c *replayCommands) runReport(stdout io.Writer) error {
	loc, err := time.LoadLocation(c.reportZone)
	if err != nil {
		return fmt.Errorf("--timezone: %w", err)
	}
	if c.events == "-" && c.truthIn == "-" {
		return errors.New("--events and --truth cannot both read standard input")
	}
	in, _, err := openInput(c.events)
	if err != nil {
		return err
	}
	defer in.Close()
	events, err := report.ReadEvents(in)
	if err != nil {
		return fmt.Errorf("%s: %w", c.events, err)
	}
	opts := report.Options{Location: loc}
	if c.truthIn != "" {
		in, _, err := openInput(c.truthIn)
		if err != nil {
			return err
		}
		opts.Faults, err = report.ReadFaults(in)
		in.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.truthIn, err)
		}
	}
	return writeOutput(c.reportOutput, stdout, false, func(w io.Writer) error { return report.Write(w, events, opts) })
}
