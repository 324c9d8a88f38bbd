// Command cascade is Cascade's one binary: each part of the pipeline is a
// subcommand. main only parses flags, sets up logging and wires packages.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"k8s.io/klog/v2"
)

func main() {
	os.Exit(runMain(os.Args[1:]))
}

// cli is the command line: the application and its subcommands' flags.
type cli struct {
	app      *kingpin.Application
	logCfg   *promslog.Config
	exporter *exporterCommand
	run      *runCommand
	rules    *rulesCommand
	dash     *dashboardsCommand
	replay   *replayCommands
	demo     *demoCommand
	version  *kingpin.CmdClause
}

func newCLI() *cli {
	app := kingpin.New("cascade", "Detects a Kubernetes control-plane cascade (API server OOM → node leases expire → gateway retry storm) as one incident with its root cause.")
	app.HelpFlag.Short('h')
	c := &cli{app: app, logCfg: &promslog.Config{}}
	promslogflag.AddFlags(app, c.logCfg)
	c.exporter = addExporterCommand(app)
	c.run = addRunCommand(app)
	c.rules = addRulesCommand(app)
	c.dash = addDashboardsCommand(app)
	c.replay = addReplayCommands(app)
	c.demo = addDemoCommand(app)
	c.version = app.Command("version", "Print the version and build information.")
	return c
}

// parse parses the command line and returns the command it names.
func (c *cli) parse(args []string) (string, error) {
	return c.app.Parse(joinDashValues(c.app.Model(), args))
}

// joinDashValues works around kingpin (v2.4.0), which reads a lone "-" as
// an empty argument: "--data -" set --data to "" (open : no such file),
// and "--truth -" wrote to a file named "". A "-" that is the value of the
// flag before it is joined to that flag ("--data=-", "-o-"), which kingpin
// reads as "-". What follows "--" is left alone.
func joinDashValues(model *kingpin.ApplicationModel, args []string) []string {
	long, short := map[string]bool{}, map[rune]bool{}
	addFlags := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if f.IsBoolFlag() {
				continue
			}
			long[f.Name] = true
			if f.Short != 0 {
				short[f.Short] = true
			}
		}
	}
	addFlags(model.Flags)
	for cmds := slices.Clone(model.Commands); len(cmds) > 0; cmds = cmds[1:] {
		addFlags(cmds[0].Flags)
		cmds = append(cmds, cmds[0].Commands...)
	}
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if arg == "-" && len(out) > 0 {
			prev := out[len(out)-1]
			if name, ok := strings.CutPrefix(prev, "--"); ok && long[name] {
				out[len(out)-1] = prev + "=-"
				continue
			}
			if r := []rune(prev); len(r) == 2 && r[0] == '-' && short[r[1]] {
				out[len(out)-1] = prev + "-"
				continue
			}
		}
		out = append(out, arg)
	}
	return out
}

func runMain(args []string) int {
	c := newCLI()
	cmd, err := c.parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cascade: %v (try --help)\n", err)
		return 2
	}
	logger := promslog.New(c.logCfg)
	slog.SetDefault(logger)
	// client-go logs through klog; send it to the same place, in the same format.
	klog.SetSlogLogger(logger.With("component", "client-go"))

	switch cmd {
	case c.version.FullCommand():
		fmt.Println(version.Print("cascade"))
		return 0
	case c.exporter.cmd.FullCommand():
		return c.exporter.run(logger)
	case c.run.cmd.FullCommand():
		return c.run.run(logger)
	}
	if code, ok := c.rules.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code
	}
	if code, ok := c.dash.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code
	}
	if code, ok := c.replay.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code
	}
	if cmd == c.demo.cmd.FullCommand() {
		return c.demo.run(os.Stdout, os.Stderr)
	}
	return 2
}
