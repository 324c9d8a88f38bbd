package distributed

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
)

// ruleFiles are the repository's rule files, the ones the binary embeds.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	var out []string
	for _, name := range rules.FileNames() {
		out = append(out, filepath.Join(root, "rules", name))
	}
	return out
}

// ruleGroups parses the rule files as Prometheus reads them.
func ruleGroups(t *testing.T, files []string) []rulefmt.RuleGroup {
	t.Helper()
	var out []rulefmt.RuleGroup
	for _, f := range files {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation)
		require.Empty(t, errs, f)
		out = append(out, groups.Groups...)
	}
	return out
}

// ruleCounts counts the rules of each group in the files.
func ruleCounts(t *testing.T, files []string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, g := range ruleGroups(t, files) {
		counts[g.Name] = len(g.Rules)
	}
	return counts
}

// ruleHealth is the part of a ruler's /api/v1/rules both Thanos and vmalert
// answer.
type ruleHealth struct {
	Data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

// awaitEvaluated waits until the ruler at url has loaded the groups and
// rules of want and evaluated each without error. A ruler may fail its
// first evaluations while it finds its query API: only a lasting error
// fails the test.
func awaitEvaluated(t *testing.T, url string, want map[string]int, logTail func() string) {
	t.Helper()
	var problems []string
	ok := assert.Eventually(t, func() bool {
		var got ruleHealth
		resp, err := http.Get(url + "/api/v1/rules")
		if err != nil {
			problems = []string{err.Error()}
			return false
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			problems = []string{err.Error()}
			return false
		}
		problems = nil
		counts := map[string]int{}
		for _, g := range got.Data.Groups {
			counts[g.Name] = len(g.Rules)
			for _, r := range g.Rules {
				if r.Health != "ok" {
					problems = append(problems, fmt.Sprintf("%s/%s: %s %s", g.Name, r.Name, r.Health, r.LastError))
				}
			}
		}
		if !maps.Equal(want, counts) {
			problems = append(problems, fmt.Sprintf("groups and rules loaded: %v, want %v", counts, want))
		}
		return len(problems) == 0
	}, 60*time.Second, 250*time.Millisecond)
	if !ok {
		t.Fatalf("the ruler did not load and evaluate every rule:\n%s\n%s", strings.Join(problems, "\n"), logTail())
	}
}

// TestRuleFilesLoadUnchanged: the rule files, as they are, pass the Thanos
// Ruler's own check and vmalert's (MetricsQL expressions, templates), and
// both rulers load every group and rule and evaluate each without error.
func TestRuleFilesLoadUnchanged(t *testing.T) {
	files := ruleFiles(t)
	want := ruleCounts(t, files)
	require.Contains(t, want, "cascade-incident")

	t.Run("thanos", func(t *testing.T) {
		t.Parallel()
		bin, err := testenv.ToolPath("thanos")
		require.NoError(t, err)
		args := []string{"tools", "rules-check"}
		for _, f := range files {
			args = append(args, "--rules="+f)
		}
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "thanos tools rules-check:\n%s", out)

		// The Query reads the Ruler's own Store API, as in production
		// (the incident rules read their own recordings back): with no
		// store at all it refuses every query, and the Ruler's default
		// partial-response strategy (abort) fails the rule.
		grpc, err := testenv.FreePort()
		require.NoError(t, err)
		q := testenv.ThanosQueryForTest(t, testenv.ThanosQueryOptions{Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", grpc)}})
		r := testenv.ThanosRuleForTest(t, testenv.ThanosRuleOptions{RuleFiles: files, QueryURL: q.URL, EvalInterval: time.Second, GRPCPort: grpc})
		awaitEvaluated(t, r.URL, want, func() string { return r.LogTail(3000) })
	})

	t.Run("vmalert", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := testenv.CheckVMAlertRules(ctx, files...)
		require.NoError(t, err, "vmalert -dryRun:\n%s", out)

		vm := testenv.VictoriaMetricsForTest(t)
		v := testenv.VMAlertForTest(t, testenv.VMAlertOptions{RuleFiles: files, DatasourceURL: vm.URL, RemoteWriteURL: vm.URL, EvaluationInterval: time.Second})
		awaitEvaluated(t, v.URL, want, func() string { return v.LogTail(3000) })
	})
}
