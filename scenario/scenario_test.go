package scenario

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/contract"
)

// parsed is a scenario's output read back with Prometheus's own
// OpenMetrics parser: series by labels, samples in file order.
type parsed map[string][]sample

type sample struct {
	t int64
	v float64
}

func parse(t *testing.T, b []byte) parsed {
	t.Helper()
	p := textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	out := parsed{}
	var lset labels.Labels
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		if e != textparse.EntrySeries {
			continue
		}
		_, ts, v := p.Series()
		require.NotNil(t, ts, "every sample has a timestamp")
		p.Labels(&lset)
		out[lset.String()] = append(out[lset.String()], sample{*ts, v})
	}
}

func generate(t *testing.T, name string, o Options) ([]byte, Truth) {
	t.Helper()
	var b bytes.Buffer
	tr, err := Generate(&b, name, o)
	require.NoError(t, err)
	return b.Bytes(), tr
}

func TestEveryScenarioIsValidOpenMetrics(t *testing.T) {
	for _, info := range List() {
		t.Run(info.Name, func(t *testing.T) {
			t.Parallel()
			b, tr := generate(t, info.Name, Options{Nodes: 30})
			series := parse(t, b)
			require.NotEmpty(t, series)
			// Plain comparisons: require's reflection per sample is slow.
			from, to := tr.Start.UnixMilli(), tr.End.Add(15*time.Second).UnixMilli()
			for name, samples := range series {
				counter := strings.Contains(name, "_total") || strings.Contains(name, "_bucket")
				for i, s := range samples {
					if math.IsNaN(s.v) || s.t < from || s.t > to {
						t.Fatalf("%s: sample %v outside the scenario (%d to %d) or NaN", name, s, from, to)
					}
					if i == 0 {
						continue
					}
					if s.t <= samples[i-1].t {
						t.Fatalf("%s: samples out of time order at %d", name, s.t)
					}
					if counter && s.v < samples[i-1].v {
						t.Fatalf("%s: counter went down at %d", name, s.t)
					}
				}
			}
			require.Equal(t, info.Incident, tr.ExpectIncident)
			_, oom := tr.Event(FirstOOM)
			require.Equal(t, info.Incident, oom, "an OOM kill happens in the incidents, and only there")
		})
	}
}

func TestLeaseAndNodeCountsAddUpToTheFleet(t *testing.T) {
	b, _ := generate(t, "zone-partition", Options{Nodes: 90})
	series := parse(t, b)
	var fresh, late, expired, ready, notReady, unknown []sample
	for name, s := range series {
		switch {
		case strings.HasPrefix(name, `{__name__="cascade_node_leases"`) && strings.Contains(name, `state="fresh"`):
			fresh = s
		case strings.HasPrefix(name, `{__name__="cascade_node_leases"`) && strings.Contains(name, `state="late"`):
			late = s
		case strings.HasPrefix(name, `{__name__="cascade_node_leases"`) && strings.Contains(name, `state="expired"`):
			expired = s
		case strings.HasPrefix(name, `{__name__="cascade_nodes"`) && strings.Contains(name, `condition="ready"`):
			ready = s
		case strings.HasPrefix(name, `{__name__="cascade_nodes"`) && strings.Contains(name, `condition="not_ready"`):
			notReady = s
		case strings.HasPrefix(name, `{__name__="cascade_nodes"`) && strings.Contains(name, `condition="unknown"`):
			unknown = s
		}
	}
	require.NotEmpty(t, fresh)
	maxExpired := 0.0
	for i := range fresh {
		require.Equal(t, 90.0, fresh[i].v+late[i].v+expired[i].v, "every lease in one state")
		require.Equal(t, 90.0, ready[i].v+notReady[i].v+unknown[i].v, "every node in one condition")
		maxExpired = math.Max(maxExpired, expired[i].v)
	}
	// A third of the fleet (one zone of three) loses its leases, no more.
	require.InDelta(t, 30, maxExpired, 2)
}

func TestSameSeedSameBytes(t *testing.T) {
	a, _ := generate(t, "incident", Options{Nodes: 40, Seed: 7})
	b, _ := generate(t, "incident", Options{Nodes: 40, Seed: 7})
	c, _ := generate(t, "incident", Options{Nodes: 40, Seed: 8})
	require.Equal(t, a, b)
	require.NotEqual(t, a, c)
}

func TestStartAndPerNodeOptions(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b, tr := generate(t, "node-failure", Options{Nodes: 20, Start: start, NoPerNodeSeries: true, Cluster: "eu-west"})
	require.Equal(t, start, tr.Start)
	require.NotContains(t, string(b), "cascade_node_lease_renew_timestamp_seconds{")
	require.Contains(t, string(b), `cluster="eu-west"`)
	b, _ = generate(t, "node-failure", Options{Nodes: 20})
	renew := 0
	for name := range parse(t, b) {
		if strings.HasPrefix(name, `{__name__="cascade_node_lease_renew_timestamp_seconds"`) {
			renew++
		}
	}
	require.Equal(t, 20, renew, "one renew series per node")
}

func TestBadOptionsWriteNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no-such", Options{}, "unknown scenario"},
		{"incident", Options{Nodes: MaxNodes + 1}, "nodes must be between"},
		{"incident", Options{Nodes: -3}, "nodes must be between"},
		{"incident", Options{Interval: time.Millisecond}, "interval must be between"},
	} {
		var b bytes.Buffer
		_, err := Generate(&b, c.name, c.o)
		require.ErrorContains(t, err, c.want)
		require.Zero(t, b.Len())
	}
}

// A region's series follow the label convention: every series carries the
// region; a cluster's own exporters carry cluster, the shared components
// carry shared, and no series carries both.
func TestRegionalLabels(t *testing.T) {
	b, tr := generate(t, "regional-outage", Options{Clusters: 6, Nodes: 10, Region: "nl-ams"})
	require.Equal(t, "nl-ams", tr.Region)
	require.Equal(t, 6, tr.Clusters)
	require.Equal(t, ScopeRegion, tr.Scope)
	require.Equal(t, sharedAPI, tr.Shared)
	require.Len(t, tr.ClustersHit, 5, "three quarters of 6, rounded")
	clusters, shared := map[string]bool{}, map[string]bool{}
	for name := range parse(t, b) {
		lset, err := parser.ParseMetric(name)
		require.NoError(t, err)
		require.Equal(t, "nl-ams", lset.Get("region"), name)
		c, s := lset.Get("cluster"), lset.Get("shared")
		require.True(t, (c == "") != (s == ""), "exactly one of cluster and shared: %s", name)
		if c != "" {
			clusters[c] = true
		} else {
			shared[s] = true
		}
	}
	require.Len(t, clusters, 6)
	require.Equal(t, map[string]bool{sharedAPI: true, sharedGateway: true}, shared)
	for _, c := range tr.ClustersHit {
		require.True(t, clusters[c], "hit cluster %s exists", c)
	}
}

// In the regional outage the clusters' own API servers stay up; the hit
// clusters' kubelets are refused (401 at the shared gateway) and their
// leases expire, the others' do not.
func TestRegionalOutageFailsOnlyTheHitClusters(t *testing.T) {
	b, tr := generate(t, "regional-outage", Options{Clusters: 4, Nodes: 30})
	hit := map[string]bool{}
	for _, c := range tr.ClustersHit {
		hit[c] = true
	}
	maxExpired := map[string]float64{}
	var refused float64
	for name, samples := range parse(t, b) {
		lset, err := parser.ParseMetric(name)
		require.NoError(t, err)
		switch {
		case lset.Get(labels.MetricName) == "cascade_apiserver_up" && lset.Get("cluster") != "":
			for _, s := range samples {
				require.Equal(t, 1.0, s.v, "a cluster's own API server stays up: %s", name)
			}
		case lset.Get(labels.MetricName) == "cascade_node_leases" && lset.Get("state") == "expired":
			for _, s := range samples {
				maxExpired[lset.Get("cluster")] = math.Max(maxExpired[lset.Get("cluster")], s.v)
			}
		case lset.Get(labels.MetricName) == "cascade_gateway_requests_total" && lset.Get("client") == "kubelet" && lset.Get("code") == "401":
			require.Equal(t, sharedGateway, lset.Get("shared"))
			refused += samples[len(samples)-1].v
		}
	}
	require.Len(t, maxExpired, 4)
	for c, m := range maxExpired {
		if hit[c] {
			require.Greater(t, m, 15.0, "%s: most leases expire", c)
		} else {
			require.Less(t, m, 3.0, "%s: not hit", c)
		}
	}
	require.Greater(t, refused, 1000.0, "kubelets refused 401 at the shared gateway")
}

func TestRegionalSameSeedSameBytes(t *testing.T) {
	a, _ := generate(t, "regional-autoheal", Options{Clusters: 5, Nodes: 8, Seed: 3})
	b, _ := generate(t, "regional-autoheal", Options{Clusters: 5, Nodes: 8, Seed: 3})
	require.Equal(t, a, b)
}

func TestBadRegionalOptionsWriteNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"incident", Options{Clusters: 3}, "a single-cluster scenario has one cluster"},
		{"regional-outage", Options{Clusters: MaxClusters + 1}, "clusters must be between"},
		{"regional-outage", Options{Clusters: -1}, "clusters must be between"},
		{"regional-outage", Options{Clusters: 1000, Nodes: 51, NoPerNodeSeries: true}, "a region holds 1 to 50000 nodes"},
		{"regional-outage", Options{Clusters: 100, Nodes: 51}, "leave out the per-node series"},
	} {
		var b bytes.Buffer
		_, err := Generate(&b, c.name, c.o)
		require.ErrorContains(t, err, c.want)
		require.Zero(t, b.Len())
	}
}

// TestWritesTheContract: a scenario writes exactly the families of the
// contract's signals, each with its type and help, as the exporters do.
func TestWritesTheContract(t *testing.T) {
	b, _ := generate(t, "incident", Options{Nodes: 10})
	type family struct{ typ, help string }
	got := map[string]family{}
	p := textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch e {
		case textparse.EntryType:
			name, typ := p.Type()
			f := got[string(name)]
			f.typ = string(typ)
			got[string(name)] = f
		case textparse.EntryHelp:
			name, help := p.Help()
			f := got[string(name)]
			f.help = string(help)
			got[string(name)] = f
		}
	}
	want := map[string]family{}
	for _, m := range contract.Signals {
		want[strings.TrimSuffix(m.Name, "_total")] = family{string(m.Type), m.Help}
	}
	require.Equal(t, want, got)
}
