//go:build cascade_exporter

package main

import (
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

// programName is the binary's name in help and version output.
const programName = "cascade-exporter"

// commands is empty: cascade-exporter is `cascade exporter` alone, with the
// same flags, and runs it when no command is named.
type commands struct{}

func addCommands(_ *kingpin.Application, exporter *exporterCommand) commands {
	exporter.cmd.Default()
	return commands{}
}

func (commands) dispatch(string, *slog.Logger) (int, bool) { return 0, false }
