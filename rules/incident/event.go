package incident

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/rules"
)

// Phase names a step of an incident, or an event within a regional one.
type Phase string

// The phases, in order, and the events of a regional incident's clusters.
const (
	Onset      Phase = "onset"
	Escalation Phase = "escalation"
	Mitigation Phase = "mitigation"
	Recovery   Phase = "recovery"
	Resolved   Phase = "resolved"
	// ClusterHit: a cluster of a regional incident began failing (its
	// nodes, or its kubelets at its gateway); Cluster names it.
	ClusterHit Phase = "cluster_hit"
	// ClusterRecovered: that cluster has been healthy for 2 minutes.
	ClusterRecovered Phase = "cluster_recovered"
)

// Scope is what an incident is about.
type Scope string

// The scopes: one cluster (its own API server failed), or a region (a
// shared component failed, or many clusters failed together).
const (
	ScopeCluster Scope = rules.ScopeCluster
	ScopeRegion  Scope = rules.ScopeRegion
)

// Key names what an incident is about: a cluster of a region, or a region.
// Region and cluster are empty when the series carry no such label (a
// single cluster with no labels is the cluster "" of the region "").
type Key struct {
	Scope   Scope  `json:"scope"`
	Region  string `json:"region,omitempty"`
	Cluster string `json:"cluster,omitempty"`
}

// String is "cluster:<region>/<cluster>" (without the empty parts) or
// "region:<region>".
func (k Key) String() string {
	if k.Scope == ScopeRegion {
		return "region:" + k.Region
	}
	var parts []string
	for _, p := range []string{k.Region, k.Cluster} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return "cluster:" + strings.Join(parts, "/")
}

// Event is one phase change of one incident, or one of its clusters hit or
// recovered. It is the line format of the journal and of Loki.
type Event struct {
	Time  time.Time `json:"time"`
	Scope Scope     `json:"scope"`
	// Region and Cluster of the incident; for a regional incident's
	// cluster_hit and cluster_recovered events, Cluster is the cluster.
	Region  string `json:"region,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Shared names the shared regional component that failed first, for a
	// regional incident with such a root cause.
	Shared    string `json:"shared,omitempty"`
	Incident  string `json:"incident"`
	Phase     Phase  `json:"phase"`
	RootCause string `json:"root_cause"`
	// ClustersHit are the clusters a regional incident has hit so far, in
	// the order they were hit; ClustersTotal the clusters of the region.
	ClustersHit   []string `json:"clusters_hit,omitempty"`
	ClustersTotal int      `json:"clusters_total,omitempty"`
	Evidence      Evidence `json:"evidence,omitempty"`
}

// Normalize fills in what older journals left out: events written before
// incidents had scopes are cluster incidents.
func (e *Event) Normalize() {
	if e.Scope == "" {
		e.Scope = ScopeCluster
	}
}

// LokiStream returns the event as Cascade ships it to Loki: the stream's
// labels and the line (the event as JSON). Labels without a value are left
// out: Loki refuses empty label values, and a single cluster has no name.
func (e Event) LokiStream() (model.LabelSet, string) {
	line, err := json.Marshal(e)
	if err != nil {
		// Only a broken Evidence encoder could fail; keep the event readable.
		line = fmt.Appendf(nil, `{"incident":%q,"phase":%q,"error":%q}`, e.Incident, e.Phase, err.Error())
	}
	labels := model.LabelSet{"source": "cascade", "kind": "incident"}
	for name, value := range map[model.LabelName]string{"scope": string(e.Scope), "phase": string(e.Phase), "region": e.Region, "cluster": e.Cluster} {
		if value != "" {
			labels[name] = model.LabelValue(value)
		}
	}
	return labels, string(line)
}

// Evidence holds the value of each recording rule an event names, at its
// time. PromQL yields NaN and infinities, which JSON numbers cannot hold:
// those are written as the strings "NaN", "+Inf" and "-Inf", so any value
// is journaled and read back.
type Evidence map[string]float64

// MarshalJSON writes the values in key order.
func (e Evidence) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		switch v := e[k]; {
		case math.IsNaN(v):
			b.WriteString(`"NaN"`)
		case math.IsInf(v, 1):
			b.WriteString(`"+Inf"`)
		case math.IsInf(v, -1):
			b.WriteString(`"-Inf"`)
		default:
			b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads numbers, and the strings MarshalJSON writes.
func (e *Evidence) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(Evidence, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("evidence %s: %q is not a number", k, s)
			}
			out[k] = f
			continue
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			return fmt.Errorf("evidence %s: %w", k, err)
		}
		out[k] = f
	}
	*e = out
	return nil
}
