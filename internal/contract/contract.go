// Package contract is Cascade's metric contract, defined once: the name,
// type, help and label names of every series the exporters expose, and the
// bounded values of their labels. The exporters build their descriptors from
// it, the simulator (scenario) writes it, and the tests of the rules, the
// dashboards and the end-to-end runs check against it. A name here is public
// interface: changing one is a breaking change (README.md, "Metrics").
package contract

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Type is a metric's type, as written in the exposition formats.
type Type string

// The types the contract uses.
const (
	Gauge     Type = "gauge"
	Counter   Type = "counter"
	Histogram Type = "histogram"
)

// Metric is one metric family of the contract.
type Metric struct {
	// Name is the family's name as Prometheus exposes it (counters end in
	// _total).
	Name   string
	Type   Type
	Help   string
	Labels []string
}

// Desc is the family's descriptor, for collectors that send const metrics.
func (m Metric) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
}

// CounterOpts are the options of a counter vector of the family (Labels go
// to its constructor).
func (m Metric) CounterOpts() prometheus.CounterOpts {
	return prometheus.CounterOpts{Name: m.Name, Help: m.Help}
}

// HistogramOpts are the options of a histogram vector of the family.
func (m Metric) HistogramOpts(buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Name: m.Name, Help: m.Help, Buckets: buckets}
}

// Series are the names of the series the family is stored as: a
// histogram's _bucket, _sum and _count, else its name.
func (m Metric) Series() []string {
	if m.Type == Histogram {
		return []string{m.Name + "_bucket", m.Name + "_sum", m.Name + "_count"}
	}
	return []string{m.Name}
}

// Header is the family's HELP and TYPE lines in the Prometheus text format.
func (m Metric) Header() string {
	help := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(m.Help)
	return "# HELP " + m.Name + " " + help + "\n# TYPE " + m.Name + " " + string(m.Type) + "\n"
}

// The API server memory exporter (exporters/apimemory).
var (
	APIServerWorkingSet = Metric{"cascade_apiserver_memory_working_set_bytes", Gauge,
		"Working set of the API server replica: cgroup usage minus inactive file, or RSS when only that is known.",
		[]string{"replica"}}
	APIServerLimit = Metric{"cascade_apiserver_memory_limit_bytes", Gauge,
		"Effective memory limit of the API server replica; absent when unknown or unlimited.",
		[]string{"replica"}}
	APIServerOOMKills = Metric{"cascade_apiserver_oom_kills_total", Counter,
		"OOM kills of the API server replica observed by any source.",
		[]string{"replica"}}
	APIServerRestarts = Metric{"cascade_apiserver_restarts_total", Counter,
		"Process restarts of the API server replica observed by any source.",
		[]string{"replica"}}
	APIServerUp = Metric{"cascade_apiserver_up", Gauge,
		"1 when the last probe of the API server replica succeeded.",
		[]string{"replica"}}
	APIServerPodWatchUp = Metric{"cascade_apiserver_pod_watch_up", Gauge,
		"1 while the watch on API server pods is healthy: their status is current.",
		nil}
	APIServerSourceErrors = Metric{"cascade_apiserver_source_errors_total", Counter,
		"Failed reads of a source of API server memory: probes, cgroup reads, pod list and watch calls.",
		[]string{"source"}}
)

// The node lease exporter (exporters/nodelease).
var (
	NodeLeaseRenewTimestamp = Metric{"cascade_node_lease_renew_timestamp_seconds", Gauge,
		"When the node last renewed its lease (the lease's renewTime), as a Unix time.",
		[]string{"node"}}
	NodeLeaseDuration = Metric{"cascade_node_lease_duration_seconds", Gauge,
		"The lease's leaseDurationSeconds (40 s assumed when the lease has none).",
		[]string{"node"}}
	NodeLeases = Metric{"cascade_node_leases", Gauge,
		"Node leases by state: fresh (age below a quarter of the duration), late, expired (age at or above the duration). Absent while the watch is down.",
		[]string{"state"}}
	Nodes = Metric{"cascade_nodes", Gauge,
		"Nodes by Ready condition. Absent while the node watch is down.",
		[]string{"condition"}}
	NodeLeaseWatchUp = Metric{"cascade_node_lease_watch_up", Gauge,
		"1 while the lease watch is healthy: synced, no error since its last success, and the API answers the exporter's probe.",
		nil}
	NodeLeaseWatchLastEvent = Metric{"cascade_node_lease_watch_last_event_timestamp_seconds", Gauge,
		"When the lease watch last delivered an event or completed a list, as a Unix time.",
		nil}
	NodeLeaseWatchErrors = Metric{"cascade_node_lease_watch_errors_total", Counter,
		"Errors of the exporter's list, watch and probe calls to the API server, by resource.",
		[]string{"resource"}}
)

// The gateway access log exporter (exporters/gateway).
var (
	GatewayRequests = Metric{"cascade_gateway_requests_total", Counter,
		"Requests seen in the gateway's access log, by route template, HTTP method, status code and client class.",
		[]string{"route", "method", "code", "client"}}
	GatewayRequestDuration = Metric{"cascade_gateway_request_duration_seconds", Histogram,
		"Latency of the requests seen in the gateway's access log, by route template and client class. Watches have their own routes (.../watch/...).",
		[]string{"route", "client"}}
	GatewayTimeouts = Metric{"cascade_gateway_timeouts_total", Counter,
		"Requests that timed out upstream: status 504, nginx upstream status 504, Envoy response flag UT or UMSDR, or longer than the configured timeout threshold.",
		[]string{"route", "client"}}
	GatewayLogLines = Metric{"cascade_gateway_log_lines_total", Counter,
		"Access log lines read, by result: parsed, or malformed (unreadable, too long, or not valid UTF-8) and skipped.",
		[]string{"result"}}
	GatewayLogReadErrors = Metric{"cascade_gateway_log_read_errors_total", Counter,
		"Errors opening, checking or reading an access log, by configured path.",
		[]string{"path"}}
	GatewayLogRotations = Metric{"cascade_gateway_log_rotations_total", Counter,
		"Rotations of an access log seen, by configured path and kind: rename (a new file at the path) or truncate (copytruncate).",
		[]string{"path", "kind"}}
	GatewayLogFilesAbandoned = Metric{"cascade_gateway_log_files_abandoned_total", Counter,
		"Rotated-away access log files closed because they kept failing to read, by configured path; lines they held after the last one read are lost.",
		[]string{"path"}}
	GatewayPositionsWriteErrors = Metric{"cascade_gateway_positions_write_errors_total", Counter,
		"Failed writes of the positions file.",
		nil}
	GatewayRoutesOverLimit = Metric{"cascade_gateway_routes_over_limit_total", Counter,
		"Requests counted with route \"other\" because the number of distinct routes reached its limit.",
		nil}
)

// GatewayDurationBuckets are the buckets of GatewayRequestDuration: API
// calls from milliseconds to the 60 s of a default upstream timeout, then
// long requests (watches, log follows) up to an hour, so a timeout lands in
// its own bucket.
var GatewayDurationBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
}

// Every exporter's own health (package exporters).
var (
	ExporterScrapeDuration = Metric{"cascade_exporter_scrape_duration_seconds", Gauge,
		"Time the exporter took to produce its metrics for this scrape.",
		[]string{"exporter"}}
	ExporterScrapeSuccess = Metric{"cascade_exporter_scrape_success", Gauge,
		"1 if the exporter produced its metrics without error in this scrape.",
		[]string{"exporter"}}
)

// Signals are the families the incident's three signals and the observer's
// health are made of (DESIGN.md's contract table): every exporter serves
// them while what it watches exists, and the simulator reproduces exactly
// these.
var Signals = []Metric{
	APIServerWorkingSet, APIServerLimit, APIServerOOMKills, APIServerRestarts, APIServerUp,
	GatewayRequests, GatewayRequestDuration, GatewayTimeouts, GatewayLogLines,
	NodeLeaseRenewTimestamp, NodeLeaseDuration, NodeLeases, Nodes, NodeLeaseWatchUp, NodeLeaseWatchLastEvent,
}

// All is every family of the contract, in the order of README.md's table.
var All = []Metric{
	APIServerWorkingSet, APIServerLimit, APIServerOOMKills, APIServerRestarts, APIServerUp,
	APIServerPodWatchUp, APIServerSourceErrors,
	NodeLeaseRenewTimestamp, NodeLeaseDuration, NodeLeases, Nodes, NodeLeaseWatchUp, NodeLeaseWatchLastEvent,
	NodeLeaseWatchErrors,
	GatewayRequests, GatewayRequestDuration, GatewayTimeouts, GatewayLogLines, GatewayLogReadErrors,
	GatewayLogFilesAbandoned, GatewayLogRotations, GatewayPositionsWriteErrors, GatewayRoutesOverLimit,
	ExporterScrapeDuration, ExporterScrapeSuccess,
}

// Values of the state label of NodeLeases: fresh below a quarter of the
// lease duration (the renew interval), expired at or above the duration.
const (
	LeaseFresh   = "fresh"
	LeaseLate    = "late"
	LeaseExpired = "expired"
)

// LeaseStates are the states in that order.
var LeaseStates = [3]string{LeaseFresh, LeaseLate, LeaseExpired}

// Values of the condition label of Nodes: the Ready condition.
const (
	NodeReady    = "ready"
	NodeNotReady = "not_ready"
	NodeUnknown  = "unknown"
)

// NodeConditions are the conditions in that order.
var NodeConditions = [3]string{NodeReady, NodeNotReady, NodeUnknown}

// Values of the client label of the gateway's families: a bounded class
// taken from the user agent.
const (
	ClientKubelet    = "kubelet"
	ClientController = "controller"
	ClientKubectl    = "kubectl"
	ClientOther      = "other"
)

// Values of the result label of GatewayLogLines.
const (
	LinesParsed    = "parsed"
	LinesMalformed = "malformed"
)
