//go:build !cascade_exporter

package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/cascade-sre/cascade/dashboards"
)

// dashboardsCommand is `cascade dashboards`: write the Grafana dashboards
// as importable JSON.
type dashboardsCommand struct {
	build  *kingpin.CmdClause
	output string
}

func addDashboardsCommand(app *kingpin.Application) *dashboardsCommand {
	c := &dashboardsCommand{}
	cmd := app.Command("dashboards", "Work with Cascade's Grafana dashboards.")
	c.build = cmd.Command("build", "Write every dashboard as JSON that Grafana's import and file provisioning accept.")
	c.build.Flag("output.dir", "Folder to write the dashboard JSON files into (created if missing).").Default("dashboards/json").StringVar(&c.output)
	return c
}

// dispatch runs the dashboards subcommand named cmd; ok is false if cmd is
// not one.
func (c *dashboardsCommand) dispatch(cmd string, stdout, stderr io.Writer) (code int, ok bool) {
	if cmd != c.build.FullCommand() {
		return 0, false
	}
	paths, err := dashboards.Write(c.output)
	if err != nil {
		fmt.Fprintf(stderr, "cascade: dashboards: %v\n", err)
		return 1, true
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return 0, true
}
