package rules

// The names the rule files define that Go code reads or matches: the
// incident tracker, the Alertmanager routing, the report, the demo, the
// dashboards and the tests use these, never their own copies. TestNames
// checks every one against the files.

// IncidentGroup is the rule group of incident.yml that holds the incident
// and the recording rules it reads.
const IncidentGroup = "cascade-incident"

// The alerts, every one: TestNames fails when a file has another.
const (
	IncidentAlert                  = "ControlPlaneCascadeIncident"
	GuardAlert                     = "ControlPlaneAutoHealGuard"
	MemoryExhaustionPredictedAlert = "APIServerMemoryExhaustionPredicted"
	MemoryPressureAlert            = "APIServerMemoryPressure"
	OOMKilledAlert                 = "APIServerOOMKilled"
	LeasesExpiringAlert            = "NodeLeasesExpiringFleetWide"
	LeaseWatchDownAlert            = "NodeLeaseWatchDown"
	GatewayRequestSurgeAlert       = "GatewayRequestSurge"
	GatewayTimeoutsAlert           = "GatewayTimeouts"
)

// Alerts lists every alert, the incident first.
var Alerts = []string{
	IncidentAlert, GuardAlert, MemoryExhaustionPredictedAlert, MemoryPressureAlert, OOMKilledAlert,
	LeasesExpiringAlert, LeaseWatchDownAlert, GatewayRequestSurgeAlert, GatewayTimeoutsAlert,
}

// Labels of the alerts. An alert of the incident carries IncidentLabel, a
// guard GuardLabel, a symptom SymptomLabel, each "true"; the incident and
// the guard say their ScopeLabel, the incident its RootCauseLabel and, for
// a region, the SharedLabel of the component that failed first.
const (
	IncidentLabel  = "cascade_incident"
	GuardLabel     = "cascade_guard"
	SymptomLabel   = "cascade_symptom"
	ScopeLabel     = "scope"
	RootCauseLabel = "root_cause"
	SharedLabel    = "shared"
	// ClusterLabel and RegionLabel name a cluster and its region; they come
	// from target labels (rules/README.md, "Regions and shared components").
	ClusterLabel = "cluster"
	RegionLabel  = "region"
)

// Values of ScopeLabel.
const (
	ScopeCluster = "cluster"
	ScopeRegion  = "region"
)

// Values of RootCauseLabel. CauseRegionalCommon is a region's with no
// shared component to blame.
const (
	CauseOOM            = "apiserver_oom"
	CauseMemoryPressure = "apiserver_memory_pressure"
	CauseUnreachable    = "apiserver_unreachable"
	CauseRegionalCommon = "regional_common_cause"
)

// Recording rules read from Go. A root cause's signal is "active" (1 or
// absent) while it holds, and its "first" rule says when it first held
// within the correlation window.
const (
	OOMActive             = "cascade:apiserver_oom:active"
	OOMFirst              = "cascade:apiserver_oom:first_timestamp10m"
	MemoryNearLimitActive = "cascade:apiserver_memory_near_limit:active"
	MemoryNearLimitFirst  = "cascade:apiserver_memory_near_limit:first_timestamp10m"
	UnreachableActive     = "cascade:apiserver_unreachable:active"
	UnreachableFirst      = "cascade:apiserver_unreachable:first_timestamp10m"

	IncidentSymptoms  = "cascade:incident_symptoms:active"
	MemoryUtilisation = "cascade:apiserver_memory_utilisation:max"
	OOMKills          = "cascade:apiserver_oom_kills:increase2m"
	ReplicasUp        = "cascade:apiserver_replicas_up:sum"
	LeasesNotFresh    = "cascade:node_leases_not_fresh:ratio"
	LeaseWatchUp      = "cascade:node_lease_watch_up:max"
	KubeletErrors     = "cascade:gateway_kubelet_errors:rate1m"
	RegionClusters    = "cascade:region_clusters:count"
	RegionClustersHit = "cascade:region_clusters_hit:count"
	ClusterHit        = "cascade:cluster_hit:active"
	ClusterHitStart   = "cascade:cluster_hit:start_timestamp"
	AutoHealGuard     = "cascade:autoheal_guard"
)
