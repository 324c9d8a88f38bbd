package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"

	"github.com/cascade-sre/cascade/exporters/server"
	"github.com/cascade-sre/cascade/internal/exepages"
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

// exporterGCPercent is the exporter's GOGC unless $GOGC is set: its heap
// is small (~10 MiB at 5,000 nodes) and mostly short-lived, so collecting
// it twice as often costs little CPU and keeps its memory below
// kube-state-metrics' (BENCHMARKS.md).
const exporterGCPercent = 50

// exporterMaxProcs is the exporter's GOMAXPROCS unless $GOMAXPROCS is set.
// Its work is a few percent of a core, in short bursts spread over several
// goroutines: a scrape alone runs client_golang's registry, which collects
// in goroutines of its own. On one processor those hand over to each
// other on one thread; on more, each hand-over may wake another thread and
// wait for a CPU to run it, which on a busy node is what the slowest
// scrapes wait for. Measured (BENCHMARKS.md, -compare): a fifth less CPU and
// a shorter tail at 1,000 and 5,000 nodes. The gateway exporter's parser
// does over a million lines a second on one core.
const exporterMaxProcs = 1

func (c *exporterCommand) run(logger *slog.Logger) int {
	releaseStartupPages(logger, "package initialisers")
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(exporterGCPercent)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(exporterMaxProcs)
	}
	parts, err := c.server.Build(logger, false)
	if err != nil {
		logger.Error("cannot start the exporter", "err", err)
		return 1
	}
	if err := c.server.ValidateWeb(); err != nil {
		logger.Error("invalid --web.config.file", "file", c.server.WebConfigFile(), "err", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g run.Group
	if err := c.server.AddToGroup(&g, ctx, cancel, parts, nil, logger, nil); err != nil {
		logger.Error("cannot start the exporter", "err", err)
		return 1
	}
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	releaseStartupPages(logger, "set-up")
	return runGroup(&g, logger, "exporter")
}

// releaseStartupPages hands back the pages of the executable that only
// start-up touched (internal/exepages); what the work needs comes back on
// first use. after names what touched them, for the debug log. The
// exporter calls it twice: once the package initialisers have run (they
// leave some 15 MiB of its executable resident: the Kubernetes client's,
// client_golang's, TLS's), then once flags, configuration and clients are
// set up, just before the work starts.
func releaseStartupPages(logger *slog.Logger, after string) {
	n, err := exepages.Release()
	if err != nil {
		logger.Debug("cannot hand back the executable's start-up pages", "after", after, "err", err)
		return
	}
	logger.Debug("handed back the executable's start-up pages", "after", after, "mapped_bytes", n)
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
