package demo

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/scenario"
)

// The files a demo leaves in its output directory.
const (
	// TransitionsFile is the backtest's output, as `cascade backtest
	// --format json` prints it: what `cascade report` reads.
	TransitionsFile = "transitions.jsonl"
	// LokiFile holds the incident events as the Loki pushes `cascade run`
	// would make: one push per event.
	LokiFile   = "loki-events.jsonl"
	TruthFile  = "truth.json"
	ReportFile = "report.md"
)

// writeFiles writes the demo's files, each whole or not at all.
func writeFiles(dir string, transitions []backtest.Transition, truth scenario.Truth, report []byte) error {
	err := atomicfile.Write(filepath.Join(dir, TransitionsFile), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, t := range transitions {
			if err := enc.Encode(t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = atomicfile.Write(filepath.Join(dir, LokiFile), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, t := range transitions {
			if t.Event == nil {
				continue
			}
			labels, line := t.Event.LokiStream()
			stream := map[string]string{}
			for k, v := range labels {
				stream[string(k)] = string(v)
			}
			push := map[string]any{"streams": []any{map[string]any{"stream": stream, "values": [][2]string{{strconv.FormatInt(t.Time.UnixNano(), 10), line}}}}}
			if err := enc.Encode(push); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(truth, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, TruthFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ReportFile), report, 0o644)
}
