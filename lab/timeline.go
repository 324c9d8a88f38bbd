package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sre/cascade/rules/report"
)

// Names of the real events the lab records; firstOOM is the one `cascade
// report --truth` measures detection from.
const (
	evFleetReady      = "fleet_ready"
	evFault           = "fault_injected"
	evDeploy          = "deployments_started"
	evDeployDone      = "deployments_done"
	evFirstOOM        = report.FirstOOM
	evOOMKill         = "oom_kill"
	evRestart         = "restart"
	evKubelets401     = "kubelets_rejected"
	evLeasesLate50    = "half_leases_late"
	evLeasesExpired1  = "first_lease_expired"
	evLeasesExpired50 = "half_leases_expired"
	evNotReady1       = "first_node_not_ready"
	evNotReady50      = "half_nodes_not_ready"
	evGuard           = "guard_received"
	evPage            = "page_received"
	evPageResolved    = "page_resolved"
	evTicket          = "ticket_received"
	evRemedy          = "remedy"
	evClusterRecover  = "cluster_recovered"
	evRecovered       = "recovered"
	evGatewayPeak     = "gateway_peak"
	evNodeLost        = "node_lost"
	evCascade         = "cascade_event"
)

// event is one thing that really happened, as the lab saw it.
type event struct {
	Time    time.Time `json:"time"`
	Name    string    `json:"name"`
	Cluster string    `json:"cluster,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// timeline collects the real events and prints each as it happens.
type timeline struct {
	out io.Writer

	mu     sync.Mutex
	events []event
	fault  time.Time
}

func newTimeline(out io.Writer) *timeline { return &timeline{out: out} }

// add records an event now.
func (t *timeline) add(name, cluster, format string, args ...any) event {
	return t.addAt(time.Now(), name, cluster, format, args...)
}

// addAt records an event that happened at at (a node's transition time,
// say) and prints it.
func (t *timeline) addAt(at time.Time, name, cluster, format string, args ...any) event {
	e := event{Time: at, Name: name, Cluster: cluster, Detail: fmt.Sprintf(format, args...)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if name == evFault || name == evDeploy {
		t.fault = at
	}
	t.events = append(t.events, e)
	where := ""
	if cluster != "" {
		where = "[" + cluster + "] "
	}
	fmt.Fprintf(t.out, "%s  %8s  %s%s\n", at.Format("15:04:05"), t.offset(at), where, e.Detail)
	return e
}

// offset is the time since the fault as T+mm:ss, or the clock before it.
func (t *timeline) offset(at time.Time) string {
	if t.fault.IsZero() {
		return ""
	}
	d := at.Sub(t.fault).Round(time.Second)
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("T%s%02d:%02d", sign, int(d.Minutes()), int(d.Seconds())%60)
}

// all returns the events in time order.
func (t *timeline) all() []event {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.events)
	slices.SortStableFunc(out, func(a, b event) int { return a.Time.Compare(b.Time) })
	return out
}

// first is the earliest event of that name (in that cluster, unless
// cluster is "*"), zero if none.
func (t *timeline) first(name, cluster string) time.Time {
	for _, e := range t.all() {
		if e.Name == name && (cluster == "*" || e.Cluster == cluster) {
			return e.Time
		}
	}
	return time.Time{}
}

func (t *timeline) count(name string) int {
	n := 0
	for _, e := range t.all() {
		if e.Name == name {
			n++
		}
	}
	return n
}

// truth writes the injected faults and real milestones in the ground-truth
// shape `cascade report --truth` reads.
func (t *timeline) truth(w io.Writer) error {
	var faults []report.Fault
	for _, e := range t.all() {
		switch e.Name {
		case evFault, evFirstOOM, evRemedy, evRecovered, evNodeLost:
			faults = append(faults, report.Fault{Time: e.Time, Name: e.Name, Detail: e.Detail})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"events": faults})
}

// markdown writes the real timeline as a table.
func (t *timeline) markdown(w io.Writer) {
	fmt.Fprintln(w, "| time | since the fault | what happened |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, e := range t.all() {
		what := e.Detail
		if e.Cluster != "" {
			what = "[" + e.Cluster + "] " + what
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", e.Time.Format("15:04:05"), t.offset(e.Time), strings.ReplaceAll(what, "|", `\|`))
	}
}
