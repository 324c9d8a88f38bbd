package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// VMAlert is a real vmalert (VictoriaMetrics' ruler) on loopback,
// evaluating rule files on a Prometheus query API and writing what the
// rules produce to a remote-write endpoint.
type VMAlert struct {
	URL  string // its HTTP API: /api/v1/rules, /api/v1/alerts
	proc *Process
}

// VMAlertOptions configure vmalert.
type VMAlertOptions struct {
	RuleFiles      []string
	DatasourceURL  string // the base of /api/v1/query
	RemoteWriteURL string // where recording rules' results and ALERTS go
	// NotifierURLs are Alertmanagers; none: alerts go nowhere.
	NotifierURLs []string
	// EvaluationInterval is the rule groups' default interval (default 15 s).
	EvaluationInterval time.Duration
}

func (o VMAlertOptions) args() []string {
	if o.EvaluationInterval == 0 {
		o.EvaluationInterval = 15 * time.Second
	}
	args := []string{
		"-datasource.url=" + o.DatasourceURL,
		"-evaluationInterval=" + o.EvaluationInterval.String(),
		"-loggerLevel=WARN",
	}
	if o.RemoteWriteURL != "" {
		args = append(args, "-remoteWrite.url="+o.RemoteWriteURL)
	}
	for _, f := range o.RuleFiles {
		args = append(args, "-rule="+f)
	}
	for _, u := range o.NotifierURLs {
		args = append(args, "-notifier.url="+u)
	}
	if len(o.NotifierURLs) == 0 {
		args = append(args, "-notifier.blackhole")
	}
	return args
}

// StartVMAlert starts vmalert in dir and waits until it is ready.
func StartVMAlert(dir string, opts VMAlertOptions) (*VMAlert, error) {
	bin, err := ToolPath("vmalert")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	v := &VMAlert{URL: "http://127.0.0.1:" + itoa(port)}
	v.proc, err = startProcess(dir, "vmalert", bin, append(opts.args(), "-httpListenAddr=127.0.0.1:"+itoa(port))...)
	if err != nil {
		return nil, err
	}
	if err := waitFor(v.proc, 30*time.Second, httpOK(http.DefaultClient, v.URL+"/health", nil)); err != nil {
		v.proc.Kill()
		return nil, fmt.Errorf("vmalert: %w", err)
	}
	return v, nil
}

// Stop stops vmalert by its pid.
func (v *VMAlert) Stop() { v.proc.Stop() }

// LogTail is the end of vmalert's log, for failure messages.
func (v *VMAlert) LogTail(n int) string { return v.proc.LogTail(n) }

// VMAlertForTest starts vmalert for t and stops it when t ends.
func VMAlertForTest(t testing.TB, opts VMAlertOptions) *VMAlert {
	t.Helper()
	RequireLong(t)
	v, err := StartVMAlert(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start vmalert: %v", err)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("vmalert log tail:\n%s", v.proc.LogTail(3000))
		}
	})
	return v
}

// ReplayVMAlert runs vmalert's replay mode (-replay.timeFrom/-replay.timeTo)
// to its end: the rules evaluated over [from, to] as range queries on the
// datasource, rule by rule, their results written to the remote-write
// endpoint. extra flags are added as given. It returns vmalert's output.
func ReplayVMAlert(ctx context.Context, opts VMAlertOptions, from, to time.Time, extra ...string) ([]byte, error) {
	bin, err := ToolPath("vmalert")
	if err != nil {
		return nil, err
	}
	args := append(opts.args(),
		"-replay.timeFrom="+from.UTC().Format(time.RFC3339),
		"-replay.timeTo="+to.UTC().Format(time.RFC3339),
		"-replay.disableProgressBar",
	)
	out, err := exec.CommandContext(ctx, bin, append(args, extra...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vmalert replay: %w", err)
	}
	return out, nil
}

// CheckVMAlertRules runs vmalert's -dryRun on rule files: they parse as
// vmalert reads them, expressions (MetricsQL) and templates included.
func CheckVMAlertRules(ctx context.Context, ruleFiles ...string) ([]byte, error) {
	bin, err := ToolPath("vmalert")
	if err != nil {
		return nil, err
	}
	args := []string{"-dryRun", "-loggerLevel=WARN"}
	for _, f := range ruleFiles {
		args = append(args, "-rule="+f)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vmalert -dryRun: %w", err)
	}
	return out, nil
}
