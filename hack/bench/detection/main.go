// Command detection measures Cascade's detection over every scenario: each
// is generated (with the per-node series, as the exporter serves them,
// where the fleet has at most scenario.MaxNodes nodes), written gzipped,
// backtested with the embedded rules, and scored against its ground truth:
// time to detect from the first OOM kill, scope and root cause, pages,
// false incidents, the early warning's lead and the guard; for a regional
// scenario also the clusters the incident recorded as hit, and the guard in
// each hit cluster.
//
//	go run -tags slicelabels ./hack/bench/detection [-sizes 500,5000] [-clusters 20,200] [-write BENCHMARKS.md]
//
// The single-cluster scenarios run at each of -sizes nodes, the regional
// ones at each of -clusters clusters of -cluster-nodes nodes. With -write,
// the tables replace the ones between the detection markers of that file,
// so `make bench-detection` regenerates BENCHMARKS.md's tables.
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
	"slices"
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
	regional    bool
	truth       scenario.Truth
	detect      string // time to detect, or "-"
	found       string // scope, root cause and shared component of the first incident, or "-"
	right       bool   // found is what the truth expects
	pages       int
	falseInc    int // incidents not expected; in a region, regional ones
	earlyLead   string
	guard       string
	hit         string // clusters the incident recorded as hit, against the truth
	dataMB      float64
	samples     int
	backtestDur time.Duration
}

func main() {
	sizes := flag.String("sizes", "500,5000", "fleet sizes of the single-cluster scenarios, comma-separated")
	clusters := flag.String("clusters", "20,200", "numbers of clusters of the regional scenarios, comma-separated")
	clusterNodes := flag.Int("cluster-nodes", scenario.DefaultClusterNodes, "nodes of each cluster of a region")
	write := flag.String("write", "", "replace the detection tables in this Markdown file")
	flag.Parse()
	log.SetFlags(0)

	var single, regional []score
	for _, n := range ints(*sizes) {
		for _, info := range scenario.List() {
			if info.Regional {
				continue
			}
			sc := run(info, scenario.Options{Nodes: n})
			single = append(single, sc)
		}
	}
	for _, n := range ints(*clusters) {
		for _, info := range scenario.List() {
			if !info.Regional {
				continue
			}
			o := scenario.Options{Clusters: n, Nodes: *clusterNodes, NoPerNodeSeries: n**clusterNodes > scenario.MaxNodes}
			regional = append(regional, run(info, o))
		}
	}
	tables := render(single, regional)
	fmt.Print(tables)
	if *write != "" {
		if err := replaceTable(*write, tables); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote the tables into %s", *write)
	}
}

func ints(list string) []int {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("bad number %q", s)
		}
		out = append(out, n)
	}
	return out
}

func run(info scenario.Info, o scenario.Options) score {
	sc, err := measure(info, o)
	if err != nil {
		log.Fatalf("%s (%d clusters, %d nodes): %v", info.Name, o.Clusters, o.Nodes, err)
	}
	log.Printf("%-30s clusters %4d nodes %5d: detect %-6s found %-45s pages %d false %d backtest %s",
		sc.name, sc.truth.Clusters, sc.truth.Nodes, sc.detect, sc.found, sc.pages, sc.falseInc, sc.backtestDur.Round(10*time.Millisecond))
	return sc
}

func measure(info scenario.Info, o scenario.Options) (score, error) {
	sc := score{name: info.Name, regional: info.Regional, detect: "-", found: "-", earlyLead: "-", hit: "-"}
	dir, err := os.MkdirTemp("", "cascade-detection-")
	if err != nil {
		return sc, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, info.Name+".om.gz")
	f, err := os.Create(file)
	if err != nil {
		return sc, err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	counted := &countingWriter{w: zw}
	sc.truth, err = scenario.Generate(counted, info.Name, o)
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
	score1(&sc, transitions)
	return sc, nil
}

// score1 scores the transitions of one backtest against the truth.
func score1(sc *score, transitions []backtest.Transition) {
	truth := sc.truth
	oom, hasOOM := truth.Event(scenario.FirstOOM)
	var escalation *incident.Event
	var warning *backtest.Transition
	hit := map[string]bool{}
	guarded := map[string]bool{} // clusters whose guard came on
	for i, t := range transitions {
		switch {
		case t.Kind == backtest.KindIncident && t.Event.Phase == incident.Escalation:
			e := t.Event
			if escalation == nil {
				escalation = e
			}
			switch {
			case !truth.ExpectIncident:
				sc.falseInc++
			case sc.regional && e.Scope == incident.ScopeRegion && truth.Scope != scenario.ScopeRegion:
				sc.falseInc++
			case e != escalation:
				sc.falseInc++ // a second incident where one was expected
			}
		case t.Kind == backtest.KindIncident && t.Event.Phase == incident.ClusterHit:
			hit[t.Event.Cluster] = true
		case t.Kind == backtest.KindAlert && t.State == "firing" && t.Name == rules.MemoryExhaustionPredictedAlert && warning == nil:
			warning = &transitions[i]
		case t.Kind == backtest.KindAlert && t.State == "firing" && t.Name == rules.GuardAlert && t.Labels["scope"] != "region":
			guarded[t.Labels["cluster"]] = true
		}
	}
	if escalation != nil {
		sc.found = string(escalation.Scope) + " " + escalation.RootCause
		if escalation.Shared != "" {
			sc.found += " of " + escalation.Shared
		}
		sc.right = truth.ExpectIncident && escalation.RootCause == truth.RootCause && string(escalation.Scope) == truth.Scope &&
			escalation.Shared == truth.Shared
		if hasOOM {
			sc.detect = escalation.Time.Sub(oom.Time).String()
		}
	}
	if warning != nil && hasOOM && warning.Time.Before(oom.Time) {
		sc.earlyLead = oom.Time.Sub(warning.Time).String()
	}
	// The guard: on in every cluster the fault hits, and nowhere else.
	var on, wrong int
	for c := range guarded {
		if slices.Contains(truth.ClustersHit, c) {
			on++
		} else {
			wrong++
		}
	}
	switch {
	case len(truth.ClustersHit) == 0 && len(guarded) == 0:
		sc.guard = "off (right)"
	case len(truth.ClustersHit) == 0:
		sc.guard = fmt.Sprintf("on in %d (WRONG)", len(guarded))
	case on == len(truth.ClustersHit) && wrong == 0:
		sc.guard = fmt.Sprintf("on in %d of %d hit (right)", on, len(truth.ClustersHit))
	default:
		sc.guard = fmt.Sprintf("on in %d of %d hit, %d not hit (WRONG)", on, len(truth.ClustersHit), wrong)
	}
	if truth.Scope == scenario.ScopeRegion {
		var found int
		for c := range hit {
			if slices.Contains(truth.ClustersHit, c) {
				found++
			}
		}
		sc.hit = fmt.Sprintf("%d of %d", found, len(truth.ClustersHit))
		if found != len(truth.ClustersHit) || len(hit) != found {
			sc.hit += fmt.Sprintf(", %d others (WRONG)", len(hit)-found)
		}
	}
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

func render(single, regional []score) string {
	var b bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Run of %s on %s: %s, load average %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, procstat.Machine(), procstat.LoadAverage())
	if len(single) > 0 {
		fmt.Fprintln(&b, "Single clusters:")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| scenario | nodes | expected | time to detect (from first OOM) | found | pages | false incidents | early warning before OOM | auto-heal guard | data (MB, text) | samples | backtest (s) |")
		fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range single {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %d | %s | %s | %.0f | %d | %.1f |\n",
				s.name, s.truth.Nodes, expected(s.truth), s.detect, verdict(s), s.pages, s.falseInc, s.earlyLead, s.guard, s.dataMB, s.samples, s.backtestDur.Seconds())
		}
	}
	if len(regional) > 0 {
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "Regions (a shared regional API and gateway; the time to detect is from the first OOM kill of the API the incident names):")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| scenario | clusters × nodes | expected | time to detect | found | pages | false incidents | clusters hit | auto-heal guard | data (MB, text) | samples | backtest (s) |")
		fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range regional {
			fmt.Fprintf(&b, "| %s | %d × %d | %s | %s | %s | %d | %d | %s | %s | %.0f | %d | %.1f |\n",
				s.name, s.truth.Clusters, s.truth.Nodes, expected(s.truth), s.detect, verdict(s), s.pages, s.falseInc, s.hit, s.guard, s.dataMB, s.samples, s.backtestDur.Seconds())
		}
	}
	return b.String()
}

func expected(t scenario.Truth) string {
	if !t.ExpectIncident {
		return "no incident"
	}
	e := t.Scope + " " + t.RootCause
	if t.Shared != "" {
		e += " of " + t.Shared
	}
	return e
}

func verdict(s score) string {
	switch {
	case !s.truth.ExpectIncident && s.found == "-":
		return "-"
	case s.right:
		return s.found + " (right)"
	}
	return s.found + " (WRONG)"
}

// replaceTable puts the tables between the markers of the Markdown file.
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
