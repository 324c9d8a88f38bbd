package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/exporters/server"
)

// exporterCommand is `cascade exporter`: the exporters as one scrape target.
type exporterCommand struct {
	cmd    *kingpin.CmdClause
	server *server.Server
}

func addExporterCommand(app *kingpin.Application) *exporterCommand {
	cmd := app.Command("exporter", "Serve the enabled exporters (node leases, API server memory, gateway access logs) as one Prometheus scrape target.")
	return &exporterCommand{cmd: cmd, server: server.AddFlags(cmd)}
}

func (c *exporterCommand) run(logger *slog.Logger) int {
	parts, err := c.server.Build(logger, false)
	if err != nil {
		logger.Error("cannot start the exporter", "err", err)
		return 1
	}
	if err := c.server.ValidateWeb(); err != nil {
		logger.Error("invalid --web.config.file", "file", c.server.WebConfigFile(), "err", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g run.Group
	c.server.AddToGroup(&g, ctx, cancel, parts, reg, logger, nil)
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	return runGroup(&g, logger, "exporter")
}

// runGroup runs g and turns its end into an exit code: a signal is a clean
// stop, anything else a failure.
func runGroup(g *run.Group, logger *slog.Logger, what string) int {
	if err := g.Run(); err != nil && !errors.As(err, &run.SignalError{}) {
		logger.Error(what+" stopped", "err", err)
		return 1
	}
	logger.Info(what + " stopped")
	return 0
}
