// Command detection measures Cascade's detection over every scenario: each
// is generated (with the per-node series, as the exporter serves them),
// written gzipped, backtested with the embedded rules, and scored against
// its ground truth: time to detect from the first OOM kill, root cause,
// pages, false incidents, the early warning's lead and the guard.
//
//	go run -tags slicelabels ./hack/bench/detection [-sizes 500,5000] [-write BENCHMARKS.md]
//
// With -write, the table replaces the one between the detection markers of
// that file, so `make bench-detection` regenerates BENCHMARKS.md's table.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/backtest"
	"github.com/cascade-sre/cascade/rules/incident"
	"github.com/cascade-sre/cascade/scenario"
)

const (
	beginMarker = "<!-- detection table: begin (make bench-detection) -->"
	endMarker   = "<!-- detection table: end -->"
)

// score is one scenario at one size.
type score struct {
	name        string
	nodes       int
	truth       scenario.Truth
	detect      string // time to detect, or "-"
	rootCause   string
	pages       int
	falseInc    int
	earlyLead   string
	guard       string
	dataMB      float64
	samples     int
	backtestDur time.Duration
}

func main() {
	sizes := flag.String("sizes", "500,5000", "fleet sizes, comma-separated")
	write := flag.String("write", "", "replace the detection table in this Markdown file")
	flag.Parse()
	log.SetFlags(0)

	var scores []score
	for _, s := range strings.Split(*sizes, ",") {
		nodes, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("bad size %q", s)
		}
		for _, info := range scenario.List() {
			sc, err := measure(info.Name, nodes)
			if err != nil {
				log.Fatalf("%s at %d nodes: %v", info.Name, nodes, err)
			}
			log.Printf("%-18s %5d nodes: detect %-6s root cause %-14s pages %d false %d backtest %s", sc.name, nodes, sc.detect, sc.rootCause, sc.pages, sc.falseInc, sc.backtestDur.Round(10*time.Millisecond))
			scores = append(scores, sc)
		}
	}
	table := render(scores)
	fmt.Print(table)
	if *write != "" {
		if err := replaceTable(*write, table); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote the table into %s", *write)
	}
}

func measure(name string, nodes int) (score, error) {
	sc := score{name: name, nodes: nodes, detect: "-", rootCause: "-", earlyLead: "-"}
	dir, err := os.MkdirTemp("", "cascade-detection-")
	if err != nil {
		return sc, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, name+".om.gz")
	f, err := os.Create(file)
	if err != nil {
		return sc, err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	counted := &countingWriter{w: zw}
	sc.truth, err = scenario.Generate(counted, name, scenario.Options{Nodes: nodes})
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sc, err
	}
	sc.dataMB = float64(counted.n) / 1e6

	in, err := os.Open(file)
	if err != nil {
		return sc, err
	}
	defer in.Close()
	runtime.GC()
	var transitions []backtest.Transition
	began := time.Now()
	sum, err := backtest.Run(context.Background(), in, backtest.Options{}, func(t backtest.Transition) { transitions = append(transitions, t) })
	if err != nil {
		return sc, err
	}
	sc.backtestDur = time.Since(began)
	sc.samples = sum.Load.Samples
	sc.pages = sum.Notifications[rules.IncidentAlert]

	oom, hasOOM := sc.truth.Event(scenario.FirstOOM)
	var escalation, warning, guardOn *backtest.Transition
	for i, t := range transitions {
		switch {
		case t.Kind == backtest.KindIncident && t.Event.Phase == incident.Escalation:
			if escalation == nil {
				escalation = &transitions[i]
			}
			if !sc.truth.ExpectIncident {
				sc.falseInc++
			}
		case t.Kind == backtest.KindAlert && t.State == "firing" && t.Name == rules.MemoryExhaustionPredictedAlert && warning == nil:
			warning = &transitions[i]
		case t.Kind == backtest.KindAlert && t.State == "firing" && t.Name == rules.GuardAlert && guardOn == nil:
			guardOn = &transitions[i]
		}
	}
	if escalation != nil {
		sc.rootCause = escalation.Event.RootCause
		if hasOOM {
			sc.detect = escalation.Time.Sub(oom.Time).String()
		}
	}
	if warning != nil && hasOOM && warning.Time.Before(oom.Time) {
		sc.earlyLead = oom.Time.Sub(warning.Time).String()
	}
	switch on := guardOn != nil; {
	case on == sc.truth.ExpectGuard:
		sc.guard = map[bool]string{true: "on (right)", false: "off (right)"}[on]
	default:
		sc.guard = map[bool]string{true: "on (WRONG)", false: "off (WRONG)"}[on]
	}
	return sc, nil
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func render(scores []score) string {
	var b bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Run of %s on %s: %s, load average %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, procstat.Machine(), procstat.LoadAverage())
	fmt.Fprintln(&b, "| scenario | nodes | expected | time to detect (from first OOM) | root cause | pages | false incidents | early warning before OOM | auto-heal guard | data (MB, text) | samples | backtest (s) |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range scores {
		expected := "no incident"
		if s.truth.ExpectIncident {
			expected = s.truth.RootCause
		}
		root := s.rootCause
		if s.truth.ExpectIncident && root == s.truth.RootCause {
			root += " (right)"
		} else if s.truth.ExpectIncident {
			root += " (WRONG)"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %d | %s | %s | %.0f | %d | %.1f |\n",
			s.name, s.nodes, expected, s.detect, root, s.pages, s.falseInc, s.earlyLead, s.guard, s.dataMB, s.samples, s.backtestDur.Seconds())
	}
	return b.String()
}

// replaceTable puts table between the markers of the Markdown file.
func replaceTable(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q markers", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
