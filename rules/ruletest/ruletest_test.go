package ruletest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// verdict is how a run of one test file ends.
type verdict string

const (
	pass    verdict = "pass"
	fail    verdict = "fail"    // a test failed
	invalid verdict = "invalid" // the file could not be run
)

// run runs one file with RunFiles.
func run(t *testing.T, file string, defaults fs.FS) (verdict, string) {
	t.Helper()
	var out bytes.Buffer
	failed, err := RunFiles(&out, defaults, file)
	t.Logf("ruletest %s:\n%s", file, out.String())
	switch {
	case err != nil:
		if !strings.Contains(err.Error(), file) {
			t.Errorf("the error does not name the file %s: %v", file, err)
		}
		return invalid, out.String() + err.Error()
	case failed:
		return fail, out.String()
	}
	return pass, out.String()
}

// promtool runs `promtool test rules` on one file, at the engine's version:
// pass, or fail for both a failed test and an invalid file.
func promtool(t *testing.T, file string) verdict {
	t.Helper()
	testenv.RequireLong(t)
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := testenv.GoPromtool("test", "rules", abs)
	var exit *exec.ExitError
	switch {
	case err == nil && bytes.Contains(out, []byte("SUCCESS")):
		return pass
	case errors.As(err, &exit) && bytes.Contains(out, []byte("FAILED")):
		t.Logf("promtool %s:\n%s", file, out)
		return fail
	}
	t.Fatalf("promtool did not run: %v\n%s", err, out)
	return ""
}

// agree checks that ruletest and promtool reach the same verdict.
func agree(t *testing.T, mine verdict, file string) {
	t.Helper()
	theirs := promtool(t, file)
	if (mine == pass) != (theirs == pass) {
		t.Errorf("%s: ruletest says %s, promtool says %s", file, mine, theirs)
	}
}

func TestPassingFile(t *testing.T) {
	file := filepath.Join("testdata", "pass_test.yml")
	v, out := run(t, file, nil)
	if v != pass || !strings.Contains(out, "SUCCESS") {
		t.Errorf("got %s, want pass:\n%s", v, out)
	}
	agree(t, v, file)
}

func TestFailingFile(t *testing.T) {
	file := filepath.Join("testdata", "fail_test.yml")
	v, out := run(t, file, nil)
	if v != fail {
		t.Fatalf("got %s, want fail:\n%s", v, out)
	}
	for _, want := range []string{
		"  FAILED:\n",
		`test "wrong expectations", alertname "HighErrorRate", eval_time 7m (-expected +got):` + "\n" +
			`      - {alertname="HighErrorRate", job="api", severity="page", team="api-oncall"} {summary="Job api fails 2 requests/s", where=" "}` + "\n",
		`test "wrong expectations", alertname "HighErrorRate", eval_time 10m (-expected +got):` + "\n" +
			`      + {alertname="HighErrorRate", job="api", severity="page", team="api-oncall"} {summary="Job api fails 2 requests/s", where=" "}` + "\n" +
			`      - {alertname="HighErrorRate", job="api", severity="ticket", team="api-oncall"} {summary="Job api fails 2 requests/s", where=" "}` + "\n",
		`test "wrong expectations", expr "job:http_errors:rate5m", eval_time 10m (-expected +got):` + "\n" +
			`      + {__name__="job:http_errors:rate5m", job="api"} 2` + "\n" +
			`      - {__name__="job:http_errors:rate5m", job="web"} 0.25` + "\n" +
			`      + {__name__="job:http_errors:rate5m", job="web"} 0.5` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks\n%s", want)
		}
	}
	if strings.Contains(out, `{job="api"}"`) {
		t.Errorf("the passing expr test is reported:\n%s", out)
	}
	agree(t, v, file)
}

// TestCases runs small test files, each written for one feature or error,
// checking ruletest's verdict and output and that promtool agrees.
func TestCases(t *testing.T) {
	rulesFile, err := filepath.Abs(filepath.Join("testdata", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	badRules := filepath.Join(dir, "bad_rules.yml")
	if err := os.WriteFile(badRules, []byte(`groups:
  - name: bad
    rules:
      - record: twice
        expr: label_replace(up, "instance", "same", "", "")
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, yaml string
		want       verdict
		output     []string // in the output or the error
	}{{
		name: "fuzzy compare on",
		yaml: `fuzzy_compare: true
tests:
  - promql_expr_test:
      - {expr: "0.1 + 0.2", eval_time: 0s, exp_samples: [{labels: "{}", value: 0.3}]}
`,
		want: pass,
	}, {
		name: "fuzzy compare off",
		yaml: `tests:
  - promql_expr_test:
      - {expr: "0.1 + 0.2", eval_time: 0s, exp_samples: [{labels: "{}", value: 0.3}]}
`,
		want:   fail,
		output: []string{"- {} 0.3\n", "+ {} 0.30000000000000004\n"},
	}, {
		name: "NaN never equal",
		yaml: `tests:
  - promql_expr_test:
      - {expr: "NaN", eval_time: 0s, exp_samples: [{labels: "{}", value: .nan}]}
`,
		want: fail,
	}, {
		name: "start timestamp",
		yaml: `tests:
  - start_timestamp: "2024-01-01T00:00:00Z"
    interval: 1m
    input_series: [{series: up, values: 1 0 1}]
    promql_expr_test:
      - {expr: up, eval_time: 1m, exp_samples: [{labels: up, value: 0}]}
      - {expr: time(), eval_time: 2m, exp_samples: [{labels: "{}", value: 1704067320}]}
`,
		want: pass,
	}, {
		name: "missing rule file",
		yaml: `rule_files: [nothing-here.yml]
tests:
  - promql_expr_test: [{expr: vector(1), eval_time: 0s, exp_samples: [{labels: "{}", value: 1}]}]
`,
		want:   pass,
		output: []string{`WARNING: rule_files "nothing-here.yml" matches no file`},
	}, {
		name: "rule evaluation error",
		yaml: `rule_files: [` + badRules + `]
tests:
  - input_series: [{series: 'up{instance="a"}', values: 1}, {series: 'up{instance="b"}', values: 1}]
    promql_expr_test: [{expr: vector(1), eval_time: 0s, exp_samples: [{labels: "{}", value: 1}]}]
`,
		want:   fail,
		output: []string{`test #0: evaluation failed:`, `rule "twice" at 0s: vector cannot contain metrics with the same labelset`},
	}, {
		name: "unknown field",
		yaml: `tests:
  - interval: 1m
    input_serie: []
`,
		want:   invalid,
		output: []string{"line 3: field input_serie not found"},
	}, {
		name: "missing alertname",
		yaml: `rule_files: [` + rulesFile + `]
tests:
  - interval: 1m
    alert_rule_test:
      - eval_time: 1m
        alertname: HighErrorRate
      - eval_time: 2m
`,
		want:   invalid,
		output: []string{"_test.yml:7: tests[0].alert_rule_test[1]: alertname is missing"},
	}, {
		name: "bad input series",
		yaml: `tests:
  - input_series:
      - series: up
        values: 1 2 3
      - series: up{job="x"}
        values: 1 2 three
`,
		want:   invalid,
		output: []string{"_test.yml:5: tests[0].input_series[1]: "},
	}, {
		name: "bad expected labels",
		yaml: `tests:
  - promql_expr_test:
      - expr: vector(1)
        eval_time: 0s
        exp_samples:
          - labels: '{a="b"'
`,
		want:   invalid,
		output: []string{`_test.yml:6: tests[0].promql_expr_test[0].exp_samples[0]: labels "{a=\"b\""`},
	}, {
		name: "group listed twice",
		yaml: `group_eval_order: [a, b, a]
tests: []
`,
		want:   invalid,
		output: []string{`_test.yml:1: group_eval_order[2]: group "a" is listed twice`},
	}} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+"_test.yml")
			if err := os.WriteFile(file, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			v, out := run(t, file, nil)
			if v != c.want {
				t.Errorf("got %s, want %s:\n%s", v, c.want, out)
			}
			for _, o := range c.output {
				if !strings.Contains(out, o) {
					t.Errorf("the output lacks %q:\n%s", o, out)
				}
			}
			agree(t, v, file)
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	var out bytes.Buffer
	failed, err := RunFiles(&out, nil, filepath.Join("testdata", "pass_test.yml"), "testdata/no_such_test.yml")
	if failed || err == nil || !strings.Contains(err.Error(), "no_such_test.yml") {
		t.Errorf("got failed=%v, err=%v; want the missing file's error only", failed, err)
	}
	if !strings.Contains(out.String(), "SUCCESS") {
		t.Errorf("the readable file did not run:\n%s", out.String())
	}
}

// TestEmbedded runs the passing tests on embedded rule files.
func TestEmbedded(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("testdata", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "pass_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := fstest.MapFS{"demo.yml": {Data: rules}}
	for _, name := range []string{"embedded:demo.yml", "embedded:*.yml"} {
		file := filepath.Join(t.TempDir(), "embedded_test.yml")
		yaml := strings.Replace(string(tests), "  - rules.yml\n", "  - "+name+"\n", 1)
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if v, out := run(t, file, defaults); v != pass {
			t.Errorf("%s: got %s, want pass:\n%s", name, v, out)
		}
	}
	file := filepath.Join(t.TempDir(), "no_defaults_test.yml")
	if err := os.WriteFile(file, []byte("rule_files: [embedded:demo.yml]\ntests: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, out := run(t, file, nil); v != invalid {
		t.Errorf("without defaults: got %s, want invalid:\n%s", v, out)
	}
}

// TestProjectRuleTests runs the project's own rule tests: every one passes,
// and promtool agrees (agreement alone would let a test failing in both
// pass here).
func TestProjectRuleTests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "tests", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no rule tests in rules/tests: they must exist")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			v, out := run(t, file, nil)
			if v != pass {
				t.Errorf("got %s, want pass:\n%s", v, out)
			}
			agree(t, v, file)
		})
	}
}
