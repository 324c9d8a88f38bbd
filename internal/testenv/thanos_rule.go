package testenv

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ThanosRuleReplicaLabel is the external label naming a Thanos Ruler
// replica. It is dropped from the alerts the Ruler sends, so that they
// carry the same labels as any other evaluator's and Alertmanager
// deduplicates them; Thanos Query deduplicates the Ruler's series along it.
const ThanosRuleReplicaLabel = "rule_replica"

// ThanosRule is a real Thanos Ruler on loopback: it evaluates rule files
// through a Thanos Query, keeps what the rules write in its own TSDB (served
// on its Store API, so a Query given GRPCAddress reads it back) and sends
// alerts to Alertmanagers (API v2).
type ThanosRule struct {
	URL         string // its HTTP API: /api/v1/rules, /api/v1/alerts
	GRPCAddress string // its Store API
	proc        *Process
}

// ThanosRuleOptions configure a Thanos Ruler.
type ThanosRuleOptions struct {
	RuleFiles     []string
	QueryURL      string   // the base of a Thanos Query's /api/v1/query
	Alertmanagers []string // base URLs
	// EvalInterval is the rule groups' default interval (Thanos's own
	// default is 1m; Cascade's is 15s).
	EvalInterval time.Duration
	// ResendDelay is the minimum wait before a firing alert is sent again
	// (default 1m, as Thanos and Prometheus).
	ResendDelay time.Duration
	// GRPCPort is the Store API's port, so a Thanos Query can be told it
	// before the Ruler starts; 0 picks a free one.
	GRPCPort int
}

// StartThanosRule starts a Thanos Ruler in dir and waits until it is ready.
func StartThanosRule(dir string, opts ThanosRuleOptions) (*ThanosRule, error) {
	bin, err := ToolPath("thanos")
	if err != nil {
		return nil, err
	}
	httpPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	if opts.GRPCPort == 0 {
		if opts.GRPCPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if opts.EvalInterval == 0 {
		opts.EvalInterval = 15 * time.Second
	}
	if opts.ResendDelay == 0 {
		opts.ResendDelay = time.Minute
	}
	r := &ThanosRule{URL: "http://127.0.0.1:" + itoa(httpPort), GRPCAddress: "127.0.0.1:" + itoa(opts.GRPCPort)}
	args := []string{"rule",
		"--http-address=127.0.0.1:" + itoa(httpPort),
		"--grpc-address=" + r.GRPCAddress,
		"--data-dir=" + filepath.Join(dir, "data"),
		// An address, not a URL: a scheme would be read as part of the host.
		"--query=" + strings.TrimPrefix(opts.QueryURL, "http://"),
		"--eval-interval=" + opts.EvalInterval.String(),
		"--resend-delay=" + opts.ResendDelay.String(),
		fmt.Sprintf("--label=%s=%q", ThanosRuleReplicaLabel, "ruler-0"),
		"--alert.label-drop=" + ThanosRuleReplicaLabel,
		"--log.level=warn",
	}
	for _, f := range opts.RuleFiles {
		args = append(args, "--rule-file="+f)
	}
	for _, am := range opts.Alertmanagers {
		args = append(args, "--alertmanagers.url="+am)
	}
	if r.proc, err = startProcess(dir, "thanos-rule", bin, args...); err != nil {
		return nil, err
	}
	if err := waitFor(r.proc, 60*time.Second, httpOK(http.DefaultClient, r.URL+"/-/ready", nil)); err != nil {
		r.proc.Kill()
		return nil, fmt.Errorf("thanos rule: %w", err)
	}
	return r, nil
}

// Stop stops the Ruler by its pid.
func (r *ThanosRule) Stop() { r.proc.Stop() }

// LogTail is the end of the Ruler's log, for failure messages.
func (r *ThanosRule) LogTail(n int) string { return r.proc.LogTail(n) }

// ThanosRuleForTest starts a Thanos Ruler for t and stops it when t ends.
func ThanosRuleForTest(t testing.TB, opts ThanosRuleOptions) *ThanosRule {
	t.Helper()
	RequireLong(t)
	r, err := StartThanosRule(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start thanos rule: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("thanos rule log tail:\n%s", r.proc.LogTail(3000))
		}
	})
	return r
}
