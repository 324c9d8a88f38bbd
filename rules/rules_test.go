package rules

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// contractSeries are the series of the metric contract: the only raw
// series a rule may read.
func contractSeries() []string {
	var out []string
	for _, m := range contract.All {
		out = append(out, m.Series()...)
	}
	return out
}

const (
	runbookPrefix = "https://github.com/cascade-sre/cascade/blob/main/docs/runbooks/"
	// dashboard links: a cluster's (or a shared component's) alerts open the
	// overview, a region's the regional overview.
	dashboardURL       = "/d/cascade-overview/cascade-overview?{{ with $labels.region }}var-region={{ . }}&{{ end }}var-cluster={{ $labels.cluster }}"
	regionDashboardURL = "/d/cascade-region/cascade-region?var-region={{ $labels.region }}"
)

// regional says whether a rule is about regions rather than clusters: its
// aggregations and matches keep region but may drop cluster.
func regional(r rulefmt.Rule) bool {
	return strings.HasPrefix(r.Record, "cascade:region_") || r.Labels[ScopeLabel] == ScopeRegion
}

var recordName = regexp.MustCompile(`^cascade:[a-z0-9_]+:[a-z0-9_]+$`)

// loadGroups parses every embedded rule file as Prometheus does, which also
// parses every expression and template.
func loadGroups(t *testing.T) map[string]*rulefmt.RuleGroups {
	t.Helper()
	out := map[string]*rulefmt.RuleGroups{}
	for _, name := range FileNames() {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		groups, errs := rulefmt.Parse(b, false, model.UTF8Validation)
		for _, err := range errs {
			t.Errorf("%s: %v", name, err)
		}
		out[name] = groups
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func TestEmbeddedFiles(t *testing.T) {
	if got, want := FileNames(), []string{"incident.yml", "symptoms.yml"}; !slices.Equal(got, want) {
		t.Fatalf("embedded rule files %v, want %v", got, want)
	}
	loadGroups(t)
}

// TestNames checks the names of names.go against the files: every alert
// is in Alerts and nothing else, the incident group and every recording
// rule named exist, and every root cause is one the incident rules give.
func TestNames(t *testing.T) {
	alerts := map[string]bool{}
	records := map[string]bool{}
	groups := map[string]bool{}
	for _, gs := range loadGroups(t) {
		for _, g := range gs.Groups {
			groups[g.Name] = true
			for _, r := range g.Rules {
				if r.Alert != "" {
					alerts[r.Alert] = true
				}
				if r.Record != "" {
					records[r.Record] = true
				}
			}
		}
	}
	if !groups[IncidentGroup] {
		t.Errorf("no group %s", IncidentGroup)
	}
	if got := slices.Sorted(maps.Keys(alerts)); !slices.Equal(got, slices.Sorted(slices.Values(Alerts))) {
		t.Errorf("alerts in the files %v, in names.go %v", got, Alerts)
	}
	for _, r := range []string{
		OOMActive, OOMFirst, MemoryNearLimitActive, MemoryNearLimitFirst, UnreachableActive, UnreachableFirst,
		IncidentSymptoms, MemoryUtilisation, OOMKills, ReplicasUp, LeasesNotFresh, LeaseWatchUp, KubeletErrors,
		RegionClusters, RegionClustersHit, ClusterHit, ClusterHitStart, AutoHealGuard,
	} {
		if !records[r] {
			t.Errorf("no recording rule %s", r)
		}
	}
	incident, err := fs.ReadFile(Files(), "incident.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{CauseOOM, CauseMemoryPressure, CauseUnreachable, CauseRegionalCommon} {
		if !bytes.Contains(incident, []byte(`"`+c+`"`)) {
			t.Errorf("incident.yml gives no root cause %q", c)
		}
	}
}

// TestConventions checks what Alertmanager routing, the dashboards and the
// runbooks rely on: names, labels, annotations, and that every rule reads
// only contract metrics and recording rules and keeps region and cluster
// (regional rules: region).
func TestConventions(t *testing.T) {
	var rules []rulefmt.Rule
	for _, groups := range loadGroups(t) {
		for _, g := range groups.Groups {
			rules = append(rules, g.Rules...)
		}
	}
	recorded := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			if recorded[r.Record] {
				t.Errorf("recording rule %s defined twice", r.Record)
			}
			recorded[r.Record] = true
			if r.Record != AutoHealGuard && !recordName.MatchString(r.Record) {
				t.Errorf("recording rule %s: want cascade:<what>:<agg>", r.Record)
			}
		}
	}
	tests := readTests(t)
	alerts := 0
	scopes := map[string]int{}
	for _, r := range rules {
		checkExpr(t, r, recorded)
		if r.Alert == "" {
			continue
		}
		alerts++
		name := r.Alert
		sev := r.Labels["severity"]
		switch name {
		case IncidentAlert:
			if sev != "page" || r.Labels[IncidentLabel] != "true" {
				t.Errorf("%s: labels %v, want severity=page, cascade_incident=true", name, r.Labels)
			}
			if r.KeepFiringFor == 0 {
				t.Errorf("%s: no keep_firing_for", name)
			}
			scopes[name+"/"+r.Labels[ScopeLabel]]++
		case GuardAlert:
			if sev != "info" || r.Labels[GuardLabel] != "true" {
				t.Errorf("%s: labels %v, want severity=info, cascade_guard=true", name, r.Labels)
			}
			scopes[name+"/"+r.Labels[ScopeLabel]]++
		default:
			if sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", name, sev)
			}
			if r.Labels[SymptomLabel] != "true" {
				t.Errorf("%s: symptom alert without cascade_symptom=\"true\" (Alertmanager inhibits by it)", name)
			}
			if r.KeepFiringFor == 0 {
				t.Errorf("%s: no keep_firing_for: a symptom must fire once through one incident", name)
			}
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s", name, a)
			}
		}
		if !strings.Contains(r.Annotations["description"], "{{") {
			t.Errorf("%s: description shows no evidence value", name)
		}
		if got, want := r.Annotations["runbook_url"], runbookPrefix+name+".md"; got != want {
			t.Errorf("%s: runbook_url %q, want %q", name, got, want)
		}
		if _, err := os.Stat(filepath.Join("..", "docs", "runbooks", name+".md")); err != nil {
			t.Errorf("%s: runbook missing: %v", name, err)
		}
		want := dashboardURL
		if regional(r) {
			want = regionDashboardURL
		}
		if got := r.Annotations["dashboard_url"]; got != want {
			t.Errorf("%s: dashboard_url %q, want %q", name, got, want)
		}
		if !bytes.Contains(tests, []byte("alertname: "+name+"\n")) {
			t.Errorf("%s: no alert_rule_test in rules/tests", name)
		}
	}
	if alerts != 11 {
		t.Errorf("%d alerts, want 11", alerts)
	}
	// The incident and the guard: one rule per scope, no other scope.
	want := map[string]int{IncidentAlert + "/" + ScopeCluster: 1, IncidentAlert + "/" + ScopeRegion: 1, GuardAlert + "/" + ScopeCluster: 1, GuardAlert + "/" + ScopeRegion: 1}
	if !maps.Equal(scopes, want) {
		t.Errorf("incident and guard rules by scope: %v, want %v", scopes, want)
	}
}

// checkExpr fails t when r reads a series that is neither a contract metric
// nor a recording rule, aggregates or matches without the cluster label, or
// names such a series in a template query.
func checkExpr(t *testing.T, r rulefmt.Rule, recorded map[string]bool) {
	t.Helper()
	name := r.Record + r.Alert
	known := func(metric string) bool {
		return recorded[metric] || slices.Contains(contractSeries(), metric)
	}
	// What names a cluster (or a shared component): its region and its
	// cluster; regional rules keep the region.
	identity := []string{"region", "cluster"}
	if regional(r) {
		identity = []string{"region"}
	}
	keeps := func(labels []string) bool {
		for _, l := range identity {
			if !slices.Contains(labels, l) {
				return false
			}
		}
		return true
	}
	expr, err := parser.ParseExpr(r.Expr)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			if !known(n.Name) {
				t.Errorf("%s reads %q: not a contract metric nor a recording rule", name, n.Name)
			}
		case *parser.AggregateExpr:
			if n.Without || !keeps(n.Grouping) {
				t.Errorf("%s: aggregation %s drops %v", name, n, identity)
			}
		case *parser.BinaryExpr:
			// A cluster rule may join a region's rule on region alone.
			if m := n.VectorMatching; m != nil && m.On && len(m.MatchingLabels) > 0 && !keeps(m.MatchingLabels) &&
				!(slices.Contains(m.MatchingLabels, "region") && (readsRegional(n.LHS) || readsRegional(n.RHS))) {
				t.Errorf("%s: %s matches without %v", name, n, identity)
			}
		}
		return nil
	})
	for _, a := range r.Annotations {
		for _, m := range regexp.MustCompile(`"(cascade[a-z0-9_:]*)[{(\[]`).FindAllStringSubmatch(strings.ReplaceAll(a, `\"`, `"`), -1) {
			if !known(m[1]) {
				t.Errorf("%s: template queries %q: not a contract metric nor a recording rule", name, m[1])
			}
		}
	}
}

// readsRegional says whether e reads a region's recording rule.
func readsRegional(e parser.Expr) bool {
	found := false
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if v, ok := node.(*parser.VectorSelector); ok && strings.HasPrefix(v.Name, "cascade:region_") {
			found = true
		}
		return nil
	})
	return found
}

func readTests(t *testing.T) []byte {
	t.Helper()
	var all []byte
	for _, f := range testFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func testFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files in rules/tests (%v)", err)
	}
	return files
}

func ruleFiles(t *testing.T) []string {
	t.Helper()
	var abs []string
	for _, name := range FileNames() {
		p, err := filepath.Abs(name)
		if err != nil {
			t.Fatal(err)
		}
		abs = append(abs, p)
	}
	return abs
}

// goPromtool runs promtool at the engine's Prometheus version.
func goPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := testenv.GoPromtool(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func run(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	t.Logf("%s:\n%s", strings.Join(cmd.Args, " "), out)
}

func TestPromtoolCheckRules(t *testing.T) {
	goPromtool(t, append([]string{"check", "rules"}, ruleFiles(t)...)...)
}

func TestPromtoolTestRules(t *testing.T) {
	for _, f := range testFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			goPromtool(t, "test", "rules", abs)
		})
	}
}

// TestPromtoolTestRulesUnaligned runs the same tests with every evaluation
// 7 s off the 15 s grid the subqueries step on, as in Prometheus, whose
// groups evaluate at an offset of their own: the outcomes must not change.
func TestPromtoolTestRulesUnaligned(t *testing.T) {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	interval := regexp.MustCompile(`(?m)^( *)(- )?interval: 15s\n`)
	for _, f := range testFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			groups := len(interval.FindAllString(string(b), -1))
			if groups == 0 {
				t.Fatalf("%s: no test group with interval: 15s", f)
			}
			shifted := interval.ReplaceAllStringFunc(string(b), func(m string) string {
				sub := interval.FindStringSubmatch(m)
				indent := sub[1]
				if sub[2] != "" { // "- interval": the keys sit two columns right
					indent += "  "
				}
				return m + indent + "start_timestamp: 7\n"
			})
			shifted = strings.ReplaceAll(shifted, "  - ../", "  - "+dir+string(filepath.Separator))
			out := filepath.Join(t.TempDir(), filepath.Base(f))
			if err := os.WriteFile(out, []byte(shifted), 0o644); err != nil {
				t.Fatal(err)
			}
			goPromtool(t, "test", "rules", out)
		})
	}
}

// TestDebianPromtoolCheckRules loads the files into Debian's promtool
// (Prometheus 2.42): the rules must run unchanged there too. CASCADE_PROMTOOL
// names another binary. Missing, it fails, except under -short without CI,
// like every test of an outside component (testenv.RequireLong); `make
// deps` installs it.
func TestDebianPromtoolCheckRules(t *testing.T) {
	bin := os.Getenv("CASCADE_PROMTOOL")
	if bin == "" {
		bin = "/usr/bin/promtool"
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.RequireLong(t)
		t.Fatalf("%s: %v (make deps installs Debian's prometheus)", bin, err)
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		t.Logf("%s", bytes.SplitN(out, []byte("\n"), 2)[0])
	}
	run(t, exec.Command(bin, append([]string{"check", "rules"}, ruleFiles(t)...)...))
}

func ExampleFileNames() {
	fmt.Println(FileNames())
	// Output: [incident.yml symptoms.yml]
}
