// Package ruletest runs rule unit tests written for `promtool test rules`
// and reaches the verdicts promtool v0.310.0 reaches on them.
//
// For each entry of a test file's tests, the input series are loaded with
// promqltest's lazy loader, the rule groups are loaded with Prometheus's rule
// manager and evaluated, group after group, at every evaluation_interval
// from the start (Unix time 0, or start_timestamp) to the last eval_time.
// After the evaluation at or just before an alert_rule_test's eval_time, the
// firing alerts of the rules of that name are compared with exp_alerts; after
// the last evaluation, each promql_expr_test's expr is queried at its
// eval_time and compared with exp_samples. Both comparisons are of multisets:
// order does not matter, duplicates do. Sample values must be equal (a NaN
// never is), or one unit in the last place apart with fuzzy_compare: true.
// As in promtool, alerting rules start as restored (no for-state restore from
// ALERTS_FOR_STATE), pending alerts are not compared, and rule_files patterns
// that match nothing are only warned about.
//
// Every field of promtool's format is read: rule_files (globs, relative to
// the test file), evaluation_interval, group_eval_order, fuzzy_compare, and
// in tests name, interval, start_timestamp, input_series, alert_rule_test,
// promql_expr_test (with histogram samples), external_labels, external_url.
// Rule files that do not load and rule evaluation errors fail the test; a
// test file that is not valid YAML of this format, or whose series, labels
// or alertnames do not parse, is an error.
//
// Beyond promtool, a rule_files entry starting with "embedded:" names a file
// (or glob) of the embedded defaults. Rule groups that group_eval_order does
// not list sort as if listed first, as in promtool, but then in file order
// where promtool's order is random. Not supported: promtool's flags (--run,
// --diff, --debug, --junit, --ignore-unknown-fields, --enable-feature).
package ruletest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	yaml "go.yaml.in/yaml/v2"
	yaml3 "go.yaml.in/yaml/v3"

	"github.com/cascade-sre/cascade/rules/engine"
)

// RunFiles runs the unit test files and writes, for each, SUCCESS or the
// failures as -expected +got lists. failed reports whether any test failed;
// err joins the errors of the files that could not be read or are invalid
// (each error names the file and, where known, the line). defaults holds the
// rule files named "embedded:..."; it may be nil if none are.
func RunFiles(w io.Writer, defaults fs.FS, files ...string) (failed bool, err error) {
	var errs []error
	for _, name := range files {
		fmt.Fprintf(w, "Unit testing: %s\n", name)
		failures, err := runFile(w, defaults, name)
		if len(failures) > 0 {
			failed = true
			fmt.Fprintln(w, "  FAILED:")
			for _, f := range failures {
				fmt.Fprintln(w, indent(f, "    "))
			}
		}
		switch {
		case err != nil:
			errs = append(errs, err)
			fmt.Fprintf(w, "  ERROR: %s\n", strings.ReplaceAll(err.Error(), "\n", "\n    "))
		case len(failures) == 0:
			fmt.Fprintln(w, "  SUCCESS")
		}
		fmt.Fprintln(w)
	}
	return failed, errors.Join(errs...)
}

// fileRun is the run of one test file.
type fileRun struct {
	w        io.Writer
	defaults fs.FS
	name     string
	doc      yaml3.Node // for line numbers only
	tf       testFile
	order    map[string]int // group_eval_order
}

// path locates a node in the test file: mapping keys and sequence indexes.
type path []any

func (p path) String() string {
	var b strings.Builder
	for _, e := range p {
		if i, ok := e.(int); ok {
			fmt.Fprintf(&b, "[%d]", i)
		} else {
			fmt.Fprintf(&b, ".%s", e)
		}
	}
	return strings.TrimPrefix(b.String(), ".")
}

// errorf makes an invalid-file error that says where.
func (f *fileRun) errorf(p path, format string, args ...any) error {
	loc := f.name
	if line := lineOf(&f.doc, p...); line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	return fmt.Errorf("%s: %s: %s", loc, p, fmt.Sprintf(format, args...))
}

func runFile(w io.Writer, defaults fs.FS, name string) (failures []string, err error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	f := &fileRun{w: w, defaults: defaults, name: name, order: map[string]int{}}
	if err := yaml.UnmarshalStrict(b, &f.tf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	_ = yaml3.Unmarshal(b, &f.doc) // already known to be valid YAML

	if f.tf.EvaluationInterval == 0 {
		f.tf.EvaluationInterval = model.Duration(time.Minute)
	}
	for i, g := range f.tf.GroupEvalOrder {
		if _, dup := f.order[g]; dup {
			return nil, f.errorf(path{"group_eval_order", i}, "group %q is listed twice", g)
		}
		f.order[g] = i
	}
	ruleFiles, err := f.ruleFiles()
	if err != nil {
		return nil, err
	}
	for i := range f.tf.Tests {
		tg := &f.tf.Tests[i]
		if tg.Interval == 0 {
			tg.Interval = f.tf.EvaluationInterval
		}
		tf, err := f.runTest(i, tg, ruleFiles)
		failures = append(failures, tf...)
		if err != nil {
			return failures, err
		}
	}
	return failures, nil
}

// ruleFiles expands rule_files: globs relative to the test file's directory,
// or in the embedded defaults.
func (f *fileRun) ruleFiles() ([]string, error) {
	var files []string
	for i, pattern := range f.tf.RuleFiles {
		var matches []string
		var err error
		if pattern != "" {
			p := pattern
			if !strings.HasPrefix(p, engine.EmbeddedPrefix) && !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(f.name), p)
			}
			matches, err = engine.GlobRuleFiles(f.defaults, p)
		}
		if err != nil {
			return nil, f.errorf(path{"rule_files", i}, "%q: %v", pattern, err)
		}
		if len(matches) == 0 {
			fmt.Fprintf(f.w, "  WARNING: rule_files %q matches no file\n", pattern)
		}
		files = append(files, matches...)
	}
	return files, nil
}

// firing is an alert as the tests see it.
type firing struct{ labels, annotations labels.Labels }

func (a firing) String() string { return a.labels.String() + " " + a.annotations.String() }

func (a firing) equal(b firing) bool {
	return labels.Equal(a.labels, b.labels) && labels.Equal(a.annotations, b.annotations)
}

// sample is a query result as the tests see it.
type sample struct {
	labels labels.Labels
	value  float64
	hist   string // histogram in test notation, "" for a float
}

func (s sample) String() string {
	if s.hist != "" {
		return s.labels.String() + " " + s.hist
	}
	return s.labels.String() + " " + strconv.FormatFloat(s.value, 'g', -1, 64)
}

// runTest runs tests[i]. Failures are the test's verdict; the error means
// the test is invalid.
func (f *fileRun) runTest(i int, tg *testGroup, ruleFiles []string) (failures []string, err error) {
	name := fmt.Sprintf("test #%d", i)
	if tg.Name != "" {
		name = fmt.Sprintf("test %q", tg.Name)
	}
	at := path{"tests", i}

	wantAlerts, wantSamples, maxEval, err := f.expectations(at, tg)
	if err != nil {
		return nil, err
	}

	// The input series, loaded as evaluation reaches them.
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", tg.Interval)
	for _, s := range tg.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		StartTime:            tg.StartTimestamp.Time,
	})
	if err != nil {
		return nil, f.seriesError(at, err)
	}
	defer func() {
		if err := suite.Close(); err != nil {
			failures = append(failures, fmt.Sprintf("%s: closing the test storage: %v", name, err))
		}
	}()
	evalInterval := time.Duration(f.tf.EvaluationInterval)
	suite.SubqueryInterval = evalInterval

	groups, errs := f.loadGroups(suite, tg, ruleFiles)
	if errs != nil {
		return []string{fmt.Sprintf("%s: loading the rule files: %v", name, errors.Join(errs...))}, nil
	}

	// Alert tests, by eval_time.
	alertOrder := make([]int, len(tg.AlertTests))
	for j := range alertOrder {
		alertOrder[j] = j
	}
	slices.SortStableFunc(alertOrder, func(a, b int) int {
		return cmp.Compare(tg.AlertTests[a].EvalTime, tg.AlertTests[b].EvalTime)
	})
	next := 0

	mint := time.Unix(0, 0).UTC()
	if !tg.StartTimestamp.IsZero() {
		mint = tg.StartTimestamp.Time
	}
	maxt := mint.Add(time.Duration(maxEval))
	for ts := mint; !ts.After(maxt); ts = ts.Add(evalInterval) {
		var stepErrs []string
		suite.WithSamplesTill(ts, func(err error) {
			if err != nil {
				stepErrs = append(stepErrs, fmt.Sprintf("loading the input series at %s: %v", model.Duration(ts.Sub(mint)), err))
				return
			}
			for _, g := range groups {
				g.Eval(suite.Context(), ts)
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						stepErrs = append(stepErrs, fmt.Sprintf("rule %q at %s: %v", r.Name(), model.Duration(ts.Sub(mint)), err))
					}
				}
			}
		})
		if len(stepErrs) > 0 {
			return append(failures, name+": evaluation failed:\n  "+strings.Join(stepErrs, "\n  ")), nil
		}

		// An eval_time between two evaluations sees the earlier one.
		for next < len(alertOrder) && time.Duration(tg.AlertTests[alertOrder[next]].EvalTime) < ts.Sub(mint)+evalInterval {
			j := alertOrder[next]
			next++
			t := tg.AlertTests[j]
			got := firingAlerts(groups, t.Alertname)
			if lines, differ := setDiff(wantAlerts[j], got, firing.equal); differ {
				failures = append(failures, fmt.Sprintf("%s, alertname %q, eval_time %s (-expected +got):\n%s",
					name, t.Alertname, t.EvalTime, lines))
			}
		}
	}

	equal := func(a, b float64) bool { return a == b }
	if f.tf.FuzzyCompare {
		equal = func(a, b float64) bool {
			return a == b || math.Nextafter(a, math.Inf(-1)) == b || math.Nextafter(a, math.Inf(1)) == b
		}
	}
	sampleEqual := func(a, b sample) bool {
		return labels.Equal(a.labels, b.labels) && equal(a.value, b.value) && a.hist == b.hist
	}
	for j, et := range tg.ExprTests {
		got, err := query(suite, et.Expr, mint.Add(time.Duration(et.EvalTime)))
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s, expr %q, eval_time %s: %v", name, et.Expr, et.EvalTime, err))
			continue
		}
		if lines, differ := setDiff(wantSamples[j], got, sampleEqual); differ {
			failures = append(failures, fmt.Sprintf("%s, expr %q, eval_time %s (-expected +got):\n%s",
				name, et.Expr, et.EvalTime, lines))
		}
	}
	return failures, nil
}

// expectations reads what tests[i] expects, and the last eval_time.
func (f *fileRun) expectations(at path, tg *testGroup) (wantAlerts [][]firing, wantSamples [][]sample, last model.Duration, err error) {
	wantAlerts = make([][]firing, len(tg.AlertTests))
	for j, t := range tg.AlertTests {
		if t.Alertname == "" {
			return nil, nil, 0, f.errorf(append(at, "alert_rule_test", j), "alertname is missing")
		}
		for _, a := range t.ExpAlerts {
			l := map[string]string{labels.AlertName: t.Alertname}
			for k, v := range a.ExpLabels {
				if k != labels.AlertName {
					l[k] = v
				}
			}
			wantAlerts[j] = append(wantAlerts[j], firing{labels.FromMap(l), labels.FromMap(a.ExpAnnotations)})
		}
		last = max(last, t.EvalTime)
	}
	wantSamples = make([][]sample, len(tg.ExprTests))
	for j, et := range tg.ExprTests {
		for k, s := range et.ExpSamples {
			ws, err := parseSample(s)
			if err != nil {
				return nil, nil, 0, f.errorf(append(at, "promql_expr_test", j, "exp_samples", k), "%v", err)
			}
			wantSamples[j] = append(wantSamples[j], ws)
		}
		last = max(last, et.EvalTime)
	}
	return wantAlerts, wantSamples, last, nil
}

// loadGroups loads the rule groups for a test, in evaluation order:
// group_eval_order, then (where promtool's order is random) file order.
// Alerting rules start restored, as in promtool: there is no for-state to
// restore from ALERTS_FOR_STATE.
func (f *fileRun) loadGroups(suite *promqltest.LazyLoader, tg *testGroup, ruleFiles []string) ([]*rules.Group, []error) {
	loader := &groupLoader{defaults: f.defaults}
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:   rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		Appendable:  suite.Storage(),
		Context:     context.Background(),
		NotifyFunc:  func(context.Context, string, ...*rules.Alert) {},
		Logger:      slog.New(slog.DiscardHandler),
		GroupLoader: loader,
	})
	loaded, errs := m.LoadGroups(time.Duration(tg.Interval), tg.ExternalLabels, tg.ExternalURL, nil, false, ruleFiles...)
	if errs != nil {
		return nil, errs
	}
	var groups []*rules.Group
	for _, k := range loader.keys {
		if g, ok := loaded[k]; ok {
			groups = append(groups, g)
			delete(loaded, k)
		}
	}
	slices.SortStableFunc(groups, func(a, b *rules.Group) int {
		return cmp.Compare(f.order[a.Name()], f.order[b.Name()])
	})
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				ar.SetRestored(true)
			}
		}
	}
	return groups, nil
}

// seriesError locates an input series the lazy loader could not parse: its
// parse errors count lines of the load command, "load" being line 0.
func (f *fileRun) seriesError(at path, err error) error {
	var pe *parser.ParseErr
	var pes parser.ParseErrors
	if errors.As(err, &pes) && len(pes) > 0 {
		pe = &pes[0]
	} else {
		errors.As(err, &pe)
	}
	if pe == nil || pe.LineOffset < 1 {
		return f.errorf(append(at, "input_series"), "%v", err)
	}
	return f.errorf(append(at, "input_series", pe.LineOffset-1), "%v", pe.Err)
}

func parseSample(s expSample) (sample, error) {
	l, err := parser.ParseMetric(s.Labels)
	if err != nil {
		return sample{}, fmt.Errorf("labels %q: %w", s.Labels, err)
	}
	ws := sample{labels: l, value: s.Value}
	if s.Histogram != "" {
		_, vals, err := parser.ParseSeriesDesc("{} " + s.Histogram)
		switch {
		case err != nil:
			return sample{}, fmt.Errorf("histogram %q: %w", s.Histogram, err)
		case len(vals) != 1 || vals[0].Histogram == nil:
			return sample{}, fmt.Errorf("histogram %q is not one histogram", s.Histogram)
		}
		ws.hist = vals[0].Histogram.TestExpression()
	}
	return ws, nil
}

// firingAlerts collects the firing alerts of every alerting rule called name.
func firingAlerts(groups []*rules.Group, name string) []firing {
	var got []firing
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*rules.AlertingRule)
			if !ok || ar.Name() != name {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					got = append(got, firing{a.Labels.Copy(), a.Annotations.Copy()})
				}
			}
		}
	}
	return got
}

// query runs an instant query; a scalar counts as one sample without labels.
func query(suite *promqltest.LazyLoader, expr string, t time.Time) ([]sample, error) {
	q, err := suite.QueryEngine().NewInstantQuery(suite.Context(), suite.Queryable(), nil, expr, t)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(suite.Context())
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		got := make([]sample, 0, len(v))
		for _, s := range v {
			got = append(got, sample{labels: s.Metric.Copy(), value: s.F, hist: promqltest.HistogramTestExpression(s.H)})
		}
		return got, nil
	case promql.Scalar:
		return []sample{{labels: labels.EmptyLabels(), value: v.V}}, nil
	default:
		return nil, fmt.Errorf("the result is a %s, not a vector or scalar", res.Value.Type())
	}
}

// setDiff compares want and got as multisets and lists both, sorted, marked
// "-" if only expected, "+" if only got, " " if both.
func setDiff[T fmt.Stringer](want, got []T, equal func(a, b T) bool) (string, bool) {
	type line struct{ mark, text string }
	var lines []line
	differ := false
	used := make([]bool, len(got))
	for _, w := range want {
		mark := "-"
		for i, g := range got {
			if !used[i] && equal(w, g) {
				used[i], mark = true, " "
				break
			}
		}
		differ = differ || mark == "-"
		lines = append(lines, line{mark, w.String()})
	}
	for i, g := range got {
		if !used[i] {
			differ = true
			lines = append(lines, line{"+", g.String()})
		}
	}
	if len(lines) == 0 {
		return "", false
	}
	slices.SortStableFunc(lines, func(a, b line) int { return strings.Compare(a.text, b.text) })
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "  %s %s", l.mark, l.text)
	}
	return b.String(), differ
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// groupLoader reads rule files like the engine's loader, embedded defaults
// by name and the rest from disk, and notes the order of the groups.
type groupLoader struct {
	defaults fs.FS
	keys     []string // rules.GroupKey of each group, in file order
}

func (l *groupLoader) Load(name string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, errs := engine.ParseRuleFile(l.defaults, name, ignoreUnknownFields, scheme)
	if strings.HasPrefix(name, engine.EmbeddedPrefix) {
		// Errors of a file on disk name it already.
		for i, err := range errs {
			errs[i] = fmt.Errorf("%s: %w", name, err)
		}
	}
	if rgs != nil {
		for _, g := range rgs.Groups {
			l.keys = append(l.keys, rules.GroupKey(name, g.Name))
		}
	}
	return rgs, errs
}

func (*groupLoader) Parse(query string) (parser.Expr, error) { return parser.ParseExpr(query) }
