package incident

import (
	"cmp"
	"fmt"

	"github.com/prometheus/prometheus/promql"
)

// Names of the rules this package reads (rules/incident.yml).
const (
	GroupName = "cascade-incident"
	AlertName = "ControlPlaneCascadeIncident"
)

// The root causes the rules name; RegionalCommonCause is a region's with no
// shared component to blame.
const (
	CauseOOM            = "apiserver_oom"
	CauseMemoryPressure = "apiserver_memory_pressure"
	CauseUnreachable    = "apiserver_unreachable"
	RegionalCommonCause = "regional_common_cause"
)

// signalOf is the control-plane signal behind each root cause, and the
// recording rule holding when it first held in the correlation window.
var signalOf = map[string]struct{ active, first string }{
	CauseOOM:            {"cascade:apiserver_oom:active", "cascade:apiserver_oom:first_timestamp10m"},
	CauseMemoryPressure: {"cascade:apiserver_memory_near_limit:active", "cascade:apiserver_memory_near_limit:first_timestamp10m"},
	CauseUnreachable:    {"cascade:apiserver_unreachable:active", "cascade:apiserver_unreachable:first_timestamp10m"},
}

// evidence is one value an event carries: a name (the recording rule) and
// the query that reads it for this incident.
type evidence struct{ name, query string }

// signals are the queries that move one incident through its phases.
type signals struct {
	// onset gives when the root-cause signal began.
	onset string
	// quiet is the root-cause signal, 1 or absent; empty: there is no
	// failed component to watch.
	quiet string
	// symptoms is present and above zero while the fleet still fails.
	symptoms string
	evidence []evidence
}

// signalsOf says where an incident's signals are: a cluster's own
// components (shared=""), or the shared component of a region that failed
// first, and the region's clusters.
func signalsOf(s *state) signals {
	if s.Scope == ScopeRegion {
		return regionSignals(s)
	}
	component := fmt.Sprintf(`{region=%q, cluster=%q, shared=""}`, s.Region, s.Cluster)
	cluster := fmt.Sprintf(`{region=%q, cluster=%q}`, s.Region, s.Cluster)
	sig := signalOf[s.RootCause]
	return signals{
		onset:    onsetQuery(sig.first, component),
		quiet:    activeQuery(sig.active, component),
		symptoms: "cascade:incident_symptoms:active" + cluster,
		evidence: []evidence{
			{"cascade:apiserver_memory_utilisation:max", "cascade:apiserver_memory_utilisation:max" + component},
			{"cascade:apiserver_oom_kills:increase2m", "cascade:apiserver_oom_kills:increase2m" + component},
			{"cascade:apiserver_replicas_up:sum", "cascade:apiserver_replicas_up:sum" + component},
			{"cascade:node_leases_not_fresh:ratio", "cascade:node_leases_not_fresh:ratio" + cluster},
			{"cascade:node_lease_watch_up:max", "cascade:node_lease_watch_up:max" + cluster},
			{"cascade:gateway_kubelet_errors:rate1m", "cascade:gateway_kubelet_errors:rate1m" + component},
		},
	}
}

func regionSignals(s *state) signals {
	region := fmt.Sprintf(`{region=%q}`, s.Region)
	out := signals{
		symptoms: "cascade:region_clusters_hit:count" + region,
		evidence: []evidence{
			{"cascade:region_clusters_hit:count", "cascade:region_clusters_hit:count" + region},
			{"cascade:region_clusters:count", "cascade:region_clusters:count" + region},
			{"cascade:gateway_kubelet_errors:rate1m", fmt.Sprintf(`sum(cascade:gateway_kubelet_errors:rate1m{region=%q, shared!=""})`, s.Region)},
		},
	}
	sig, ok := signalOf[s.RootCause]
	if !ok || s.Shared == "" {
		// A common cause: it began when the first cluster was hit.
		out.onset = fmt.Sprintf(`min(cascade:cluster_hit:start_timestamp{region=%q})`, s.Region)
		return out
	}
	component := fmt.Sprintf(`{region=%q, shared=%q}`, s.Region, s.Shared)
	out.onset = onsetQuery(sig.first, component)
	out.quiet = activeQuery(sig.active, component)
	out.evidence = append(out.evidence,
		evidence{"cascade:apiserver_memory_utilisation:max", "cascade:apiserver_memory_utilisation:max" + component},
		evidence{"cascade:apiserver_oom_kills:increase2m", "cascade:apiserver_oom_kills:increase2m" + component},
		evidence{"cascade:apiserver_replicas_up:sum", "cascade:apiserver_replicas_up:sum" + component},
	)
	return out
}

// onsetQuery and activeQuery select a rule for one incident; an unknown
// root cause (rule files of another version) has neither: its onset is the
// page, and it goes from escalation to recovery.
func onsetQuery(rule, matchers string) string {
	if rule == "" {
		return ""
	}
	return rule + matchers
}

func activeQuery(rule, matchers string) string {
	if rule == "" {
		return ""
	}
	return rule + matchers
}

type promqlSample = promql.Sample

// compareHit orders clusters by when they were hit, then by name.
func compareHit(a, b promqlSample) int {
	return cmp.Or(cmp.Compare(a.F, b.F), cmp.Compare(a.Metric.Get("cluster"), b.Metric.Get("cluster")))
}
