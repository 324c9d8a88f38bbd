package testenv

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ThanosQuery is a real Thanos Query on loopback: the Prometheus query API
// over the Store APIs it is given (Receive replicas, a Ruler), deduplicating
// along the replica labels.
type ThanosQuery struct {
	URL         string // http://127.0.0.1:PORT, the base of /api/v1/query
	GRPCAddress string
	proc        *Process
}

// ThanosQueryOptions say what a Thanos Query reads.
type ThanosQueryOptions struct {
	// Endpoints are Store API addresses (host:port). Each is static
	// ("strict"): kept even while it does not answer, as a component that
	// starts later or restarts.
	Endpoints []string
	// ReplicaLabels are deduplicated along; default: Receive's and the
	// Ruler's (ThanosReceiveReplicaLabel, ThanosRuleReplicaLabel).
	ReplicaLabels []string
}

// StartThanosQuery starts Thanos Query in dir and waits until it is ready.
func StartThanosQuery(dir string, opts ThanosQueryOptions) (*ThanosQuery, error) {
	bin, err := ToolPath("thanos")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	if opts.ReplicaLabels == nil {
		opts.ReplicaLabels = []string{ThanosReceiveReplicaLabel, ThanosRuleReplicaLabel}
	}
	var sd strings.Builder
	sd.WriteString("endpoints:\n")
	for _, e := range opts.Endpoints {
		fmt.Fprintf(&sd, "  - {address: %q, strict: true}\n", e)
	}
	q := &ThanosQuery{URL: "http://127.0.0.1:" + itoa(ports[0]), GRPCAddress: "127.0.0.1:" + itoa(ports[1])}
	args := []string{"query",
		"--http-address=127.0.0.1:" + itoa(ports[0]),
		"--grpc-address=" + q.GRPCAddress,
		"--endpoint.sd-config=" + sd.String(),
		"--log.level=warn",
	}
	for _, l := range opts.ReplicaLabels {
		args = append(args, "--query.replica-label="+l)
	}
	if q.proc, err = startProcess(dir, "thanos-query", bin, args...); err != nil {
		return nil, err
	}
	if err := waitFor(q.proc, 60*time.Second, httpOK(http.DefaultClient, q.URL+"/-/ready", nil)); err != nil {
		q.proc.Kill()
		return nil, fmt.Errorf("thanos query: %w", err)
	}
	return q, nil
}

// Stop stops Thanos Query by its pid.
func (q *ThanosQuery) Stop() { q.proc.Stop() }

// ThanosQueryForTest starts Thanos Query for t and stops it when t ends.
func ThanosQueryForTest(t testing.TB, opts ThanosQueryOptions) *ThanosQuery {
	t.Helper()
	RequireLong(t)
	q, err := StartThanosQuery(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start thanos query: %v", err)
	}
	t.Cleanup(func() {
		q.Stop()
		if t.Failed() {
			t.Logf("thanos query log tail:\n%s", q.proc.LogTail(2000))
		}
	})
	return q
}
