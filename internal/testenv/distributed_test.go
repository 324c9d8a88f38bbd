package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func queryAPI(t *testing.T, url string) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	require.NoError(t, err)
	return v1.NewAPI(c)
}

// TestThanosReceiveQueryRule checks the Thanos harness: Prometheus
// remote-writes to a Receive ring whose replicas each hold every sample
// (replication factor 2), Thanos Query answers once per series, and a
// Ruler evaluating through that Query is read back through it.
func TestThanosReceiveQueryRule(t *testing.T) {
	ring := ThanosReceiveForTest(t, 2, 2)
	rulerGRPC, err := FreePort()
	require.NoError(t, err)
	q := ThanosQueryForTest(t, ThanosQueryOptions{Endpoints: append(ring.GRPCAddresses(), fmt.Sprintf("127.0.0.1:%d", rulerGRPC))})
	rules := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(rules, []byte(`groups:
  - name: harness
    rules:
      - record: job:up:sum
        expr: sum by (job) (up{job="self"})
`), 0o644))
	ThanosRuleForTest(t, ThanosRuleOptions{RuleFiles: []string{rules}, QueryURL: q.URL, EvalInterval: time.Second, GRPCPort: rulerGRPC})
	PrometheusForTest(t, fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: self
    static_configs: [{targets: ["localhost:9090"]}]
remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 1s}
`, ring.RemoteWriteURL()))

	qapi := queryAPI(t, q.URL)
	require.Eventually(t, func() bool {
		v, _, err := qapi.Query(t.Context(), `job:up:sum`, time.Now())
		return err == nil && len(v.(model.Vector)) == 1
	}, 60*time.Second, 250*time.Millisecond, "the Ruler's recording never came back through Query")

	v, _, err := qapi.Query(t.Context(), `count(up{job="self"})`, time.Now())
	require.NoError(t, err)
	require.Equal(t, "1", v.(model.Vector)[0].Value.String(), "deduplicated: one series")
	// Every replica holds the series: each answers it on its own.
	for _, r := range ring.Replicas {
		rq := ThanosQueryForTest(t, ThanosQueryOptions{Endpoints: []string{r.GRPCAddress}, ReplicaLabels: []string{}})
		require.Eventually(t, func() bool {
			v, _, err := queryAPI(t, rq.URL).Query(t.Context(), `up{job="self"}`, time.Now())
			return err == nil && len(v.(model.Vector)) == 1 && string(v.(model.Vector)[0].Metric[ThanosReceiveReplicaLabel]) == r.Name
		}, 30*time.Second, 250*time.Millisecond, "replica %s lacks the series", r.Name)
	}
}

// TestAlertmanagerClusterRejoins: two Alertmanagers see each other; one
// killed and started again joins the cluster again.
func TestAlertmanagerClusterRejoins(t *testing.T) {
	c := AlertmanagerClusterForTest(t, "route: {receiver: none}\nreceivers: [{name: none}]\n", 2)
	st, err := c.Peers[0].ClusterStatus(t.Context())
	require.NoError(t, err)
	require.Equal(t, "ready", st.Status)
	require.Len(t, st.Peers, 2)
	for _, p := range st.Peers {
		require.True(t, strings.HasPrefix(p.Address, "127.0.0.1:"), "gossip on loopback only: %s", p.Address)
	}
	c.Peers[1].Kill()
	require.NoError(t, c.Peers[1].Start())
	require.NoError(t, c.WaitClustered(60*time.Second))
}

// TestVictoriaMetricsImportAndVMAlert: samples imported in the OpenMetrics
// text format (seconds) are queryable at once; vmalert evaluates a rule on
// them and writes its result back.
func TestVictoriaMetricsImportAndVMAlert(t *testing.T) {
	vm := VictoriaMetricsForTest(t)
	// A minute back: VictoriaMetrics answers queries of the last 30 s as
	// of 30 s ago (-search.latencyOffset), unless asked with nocache=1.
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	var b strings.Builder
	for i := range 5 {
		fmt.Fprintf(&b, "demo_total{a=\"x\"} %d %d\n", i, now.Add(time.Duration(i-4)*time.Second).Unix())
	}
	require.NoError(t, vm.ImportPrometheus(t.Context(), strings.NewReader(b.String())))
	v, _, err := queryAPI(t, vm.URL).Query(t.Context(), `demo_total`, now)
	require.NoError(t, err)
	require.Len(t, v.(model.Vector), 1)
	require.Equal(t, "4", v.(model.Vector)[0].Value.String())

	rules := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(rules, []byte("groups:\n  - name: g\n    rules:\n      - record: demo:up\n        expr: vector(1)\n"), 0o644))
	VMAlertForTest(t, VMAlertOptions{RuleFiles: []string{rules}, DatasourceURL: vm.URL, RemoteWriteURL: vm.URL, EvaluationInterval: time.Second})
	require.Eventually(t, func() bool {
		_ = vm.Flush(t.Context())
		v, _, err := queryAPI(t, vm.URL).Query(t.Context(), `demo:up`, time.Now())
		return err == nil && len(v.(model.Vector)) == 1
	}, 60*time.Second, 500*time.Millisecond, "vmalert's recording never reached VictoriaMetrics")
}
