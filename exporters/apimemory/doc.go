// Package apimemory exports the memory of each API server replica, its OOM
// kills, restarts and reachability: the first of Cascade's three signals,
// the one that names an API server OOM as the root cause of an incident.
//
// A replica is fed by any mix of three kinds of source, joined by the
// replica name the user gives them (pods are named by their pod name):
// the API server's own /metrics (RSS, start time, reachability), the cgroup
// files of a local process (v1 or v2: working set, limit, OOM kills), and
// the status of API server pods (limit, restart count, OOMKilled
// terminations, readiness).
//
// Where sources overlap, gauges come from the most direct one: the working
// set from the cgroup, else the /metrics RSS; the limit from the cgroup if
// it has one (v2: the smallest memory.max up the tree; v1:
// hierarchical_memory_limit), else the pod's container limit; up from the
// /metrics probe, else the pod's readiness. A series is absent where no
// source knows it: the limit when every source says unlimited, OOM kills
// for a replica fed only by /metrics, restarts for one fed only by a
// cgroup.
//
// Counting rule: each source keeps its own counts, which never go down (a
// count that resets, as the oom_kill of a cgroup recreated by a restart or
// the restartCount of a re-created pod do, is accumulated), and a
// replica's counter is the maximum over its sources, never less than what
// it served before (a source may leave a replica). So one OOM kill seen
// both as a cgroup oom_kill and as an OOMKilled termination is counted
// once; the price is that two different kills, each seen by a different
// source only, are counted once too. A pod counts an OOM kill for each
// distinct OOMKilled termination (container ID, start and finish time) in
// its container's state or lastState, however often the status is
// delivered; a restart is counted from restartCount, and from a rise of
// process_start_time_seconds on /metrics.
//
// A source that fails drops its gauges until it reads again, so what is
// served is never an old value presented as current: a dead or garbled
// endpoint gives up=0 and no RSS, a cgroup that cannot be read gives no
// working set or limit, and while the pod watch is broken (a list or watch
// call failed) the pods' limits and readiness are absent. Counters stay.
// Failures are counted in cascade_apiserver_source_errors_total{source},
// source being metrics, cgroup or pods, and the pod watch's health is
// cascade_apiserver_pod_watch_up.
//
// A replica that is gone (its pod deleted) loses its series at once and is
// forgotten after Config.ForgetAfter: re-created within it, as a static
// pod's mirror is, it continues its counts; after it, it starts again from
// what its sources say, as a counter reset, so that rollouts of pods with new
// names do not keep state and series for good. Replicas of endpoints and
// cgroups are always served, so never forgotten.
package apimemory
