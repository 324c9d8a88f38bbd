package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Thanos is Thanos as a provider runs it behind Cascade: a Receive ring
// (2 replicas, replication factor 2) to remote-write to, a Query over the
// ring and the Ruler, and a Ruler evaluating rule files through that Query,
// writing its recordings to its own TSDB (read back through the Query) and
// sending alerts to Alertmanagers.
type Thanos struct {
	Receive *ThanosReceive
	Query   *ThanosQuery
	Ruler   *ThanosRule
}

// StartThanos starts Receive, Query and Ruler in subdirectories of dir.
func StartThanos(dir string, ruler ThanosRuleOptions) (*Thanos, error) {
	grpc, err := FreePort()
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"receive", "query", "rule"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	th := &Thanos{}
	if th.Receive, err = StartThanosReceive(filepath.Join(dir, "receive"), 2, 2); err != nil {
		return nil, err
	}
	endpoints := append(th.Receive.GRPCAddresses(), fmt.Sprintf("127.0.0.1:%d", grpc))
	if th.Query, err = StartThanosQuery(filepath.Join(dir, "query"), ThanosQueryOptions{Endpoints: endpoints}); err != nil {
		th.Stop()
		return nil, err
	}
	ruler.QueryURL, ruler.GRPCPort = th.Query.URL, grpc
	if th.Ruler, err = StartThanosRule(filepath.Join(dir, "rule"), ruler); err != nil {
		th.Stop()
		return nil, err
	}
	return th, nil
}

// Stop stops the Ruler, the Query and the Receive ring.
func (th *Thanos) Stop() {
	if th.Ruler != nil {
		th.Ruler.Stop()
	}
	if th.Query != nil {
		th.Query.Stop()
	}
	if th.Receive != nil {
		th.Receive.Stop()
	}
}

// RemoteWriteConfig is the remote_write section of a Prometheus-format
// configuration (Cascade's, Prometheus's) feeding the Receive ring.
// dropNames is a regular expression of metric names kept out of it:
// Cascade's own recordings and alerts when the Ruler evaluates the same
// rules, since Query would answer both copies and a rule joining on a
// recording would find two series where it wants one. Zero
// batchSendDeadline keeps Prometheus's default (5 s).
func (th *Thanos) RemoteWriteConfig(dropNames string, batchSendDeadline time.Duration) string {
	out := fmt.Sprintf("remote_write:\n  - url: %s\n", th.Receive.RemoteWriteURL())
	if batchSendDeadline > 0 {
		out += fmt.Sprintf("    queue_config: {batch_send_deadline: %s}\n", batchSendDeadline)
	}
	if dropNames != "" {
		out += fmt.Sprintf("    write_relabel_configs:\n      - {source_labels: [__name__], regex: '%s', action: drop}\n", dropNames)
	}
	return out
}

// ThanosForTest starts Thanos for t and stops it when t ends.
func ThanosForTest(t testing.TB, ruler ThanosRuleOptions) *Thanos {
	t.Helper()
	RequireLong(t)
	th, err := StartThanos(t.TempDir(), ruler)
	if err != nil {
		t.Fatalf("start thanos: %v", err)
	}
	t.Cleanup(func() {
		th.Stop()
		if t.Failed() {
			t.Logf("thanos rule log tail:\n%s", th.Ruler.LogTail(3000))
			t.Logf("thanos query log tail:\n%s", th.Query.proc.LogTail(2000))
			for _, r := range th.Receive.Replicas {
				t.Logf("%s log tail:\n%s", r.Name, r.proc.LogTail(2000))
			}
		}
	})
	return th
}
