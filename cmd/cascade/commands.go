//go:build !cascade_exporter

package main

import (
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"
)

// programName is the binary's name in help and version output.
const programName = "cascade"

// commands are cascade's commands beside `exporter` and `version`: the
// engine, the rule tools, the dashboards, scenarios and backtests, the demo.
type commands struct {
	run    *runCommand
	rules  *rulesCommand
	dash   *dashboardsCommand
	replay *replayCommands
	demo   *demoCommand
}

func addCommands(app *kingpin.Application, _ *exporterCommand) commands {
	return commands{
		run:    addRunCommand(app),
		rules:  addRulesCommand(app),
		dash:   addDashboardsCommand(app),
		replay: addReplayCommands(app),
		demo:   addDemoCommand(app),
	}
}

// dispatch runs cmd if it is one of these commands.
func (c commands) dispatch(cmd string, logger *slog.Logger) (int, bool) {
	if cmd == c.run.cmd.FullCommand() {
		return c.run.run(logger), true
	}
	if code, ok := c.rules.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code, true
	}
	if code, ok := c.dash.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code, true
	}
	if code, ok := c.replay.dispatch(cmd, os.Stdout, os.Stderr); ok {
		return code, true
	}
	if cmd == c.demo.cmd.FullCommand() {
		return c.demo.run(os.Stdout, os.Stderr), true
	}
	return 0, false
}
