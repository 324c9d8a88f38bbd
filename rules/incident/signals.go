package incident

import (
	"cmp"
	"fmt"

	"github.com/prometheus/prometheus/promql"

	"github.com/cascade-sre/cascade/rules"
)

// signalOf is the control-plane signal behind each root cause, and the
// recording rule holding when it first held in the correlation window.
var signalOf = map[string]struct{ active, first string }{
	rules.CauseOOM:            {rules.OOMActive, rules.OOMFirst},
	rules.CauseMemoryPressure: {rules.MemoryNearLimitActive, rules.MemoryNearLimitFirst},
	rules.CauseUnreachable:    {rules.UnreachableActive, rules.UnreachableFirst},
}

// evidence is one value an event carries: a name (the recording rule) and
// the query that reads it for this incident.
type evidence struct{ name, query string }

// of is the evidence of a recording rule's value for the series matchers
// select.
func of(rule, matchers string) evidence { return evidence{rule, rule + matchers} }

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
		symptoms: rules.IncidentSymptoms + cluster,
		evidence: []evidence{
			of(rules.MemoryUtilisation, component),
			of(rules.OOMKills, component),
			of(rules.ReplicasUp, component),
			of(rules.LeasesNotFresh, cluster),
			of(rules.LeaseWatchUp, cluster),
			of(rules.KubeletErrors, component),
		},
	}
}

func regionSignals(s *state) signals {
	region := fmt.Sprintf(`{region=%q}`, s.Region)
	out := signals{
		symptoms: rules.RegionClustersHit + region,
		evidence: []evidence{
			of(rules.RegionClustersHit, region),
			of(rules.RegionClusters, region),
			{rules.KubeletErrors, fmt.Sprintf(`sum(%s{region=%q, shared!=""})`, rules.KubeletErrors, s.Region)},
		},
	}
	sig, ok := signalOf[s.RootCause]
	if !ok || s.Shared == "" {
		// A common cause: it began when the first cluster was hit.
		out.onset = fmt.Sprintf(`min(%s{region=%q})`, rules.ClusterHitStart, s.Region)
		return out
	}
	component := fmt.Sprintf(`{region=%q, shared=%q}`, s.Region, s.Shared)
	out.onset = onsetQuery(sig.first, component)
	out.quiet = activeQuery(sig.active, component)
	out.evidence = append(out.evidence,
		of(rules.MemoryUtilisation, component),
		of(rules.OOMKills, component),
		of(rules.ReplicasUp, component),
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
	return cmp.Or(cmp.Compare(a.F, b.F), cmp.Compare(a.Metric.Get(rules.ClusterLabel), b.Metric.Get(rules.ClusterLabel)))
}
