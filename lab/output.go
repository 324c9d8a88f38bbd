package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/incident"
)

// Figures are what a run measured, for its verdict, the test and
// BENCHMARKS.md.
type Figures struct {
	Shape    string `json:"shape"`
	DryRun   bool   `json:"dry_run"`
	Nodes    int    `json:"nodes_per_cluster"`
	Clusters int    `json:"clusters"`
	Interval string `json:"interval"`
	// KillMechanism says what killed at the limit.
	KillMechanism   string `json:"kill_mechanism"`
	MemoryLimitMiB  int64  `json:"memory_limit_mib"`
	RemedyLimitMiB  int64  `json:"remedy_limit_mib,omitempty"`
	WebhookCacheTTL string `json:"webhook_cache_ttl,omitempty"`
	OOMKills        int    `json:"oom_kills"`
	// OOMKillsBeforeFault are kills during the baseline: a limit too tight
	// for the fleet, not the fault.
	OOMKillsBeforeFault int `json:"oom_kills_before_fault"`

	// Pages are firing notifications at the paging receiver.
	Pages              int    `json:"pages"`
	PageRootCause      string `json:"page_root_cause,omitempty"`
	PageScope          string `json:"page_scope,omitempty"`
	PageShared         string `json:"page_shared,omitempty"`
	PageSummary        string `json:"page_summary,omitempty"`
	ClusterScopedPages int    `json:"cluster_scoped_pages"`
	// SymptomsAtPager counts alerts other than the incident that reached
	// the paging receiver.
	SymptomsAtPager int  `json:"symptoms_at_pager"`
	Tickets         int  `json:"tickets"`
	PageResolved    bool `json:"page_resolved"`

	TimeToPageSeconds            *float64 `json:"time_to_page_seconds,omitempty"`
	TimeToDetectRecoverySeconds  *float64 `json:"time_to_detect_recovery_seconds,omitempty"`
	RecoveryAfterFirstOOMSeconds *float64 `json:"recovery_after_first_oom_seconds,omitempty"`

	// ClustersHit is what Cascade's incident events name; ClustersHitReal
	// what the lab saw fail.
	ClustersHit     int `json:"clusters_hit"`
	ClustersHitReal int `json:"clusters_hit_real"`
	// GuardLeadSeconds is how long before the node lifecycle controller
	// marked the first node NotReady the guard had reached the automation
	// in every hit cluster (negative: after).
	GuardLeadSeconds *float64 `json:"guard_lead_seconds,omitempty"`
	GuardClusters    int      `json:"guard_clusters"`

	GatewayBaselineRPS float64 `json:"gateway_baseline_rps"`
	GatewayPeakRPS     float64 `json:"gateway_peak_rps"`

	CascadeCPUSeconds float64 `json:"cascade_run_cpu_seconds"`
	// CascadeCPUPercent is its mean CPU, in percent of one core.
	CascadeCPUPercent float64 `json:"cascade_run_cpu_percent_of_a_core"`
	CascadePeakRSSMiB float64 `json:"cascade_run_peak_rss_mib"`
	WallSeconds       float64 `json:"wall_seconds"`
	// LoadAverage is the machine's 1-minute load at the start and the end:
	// other work shares it.
	LoadAverage string `json:"load_average"`
}

// loadAverage is the 1-minute load average, "?" where unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	first, _, _ := strings.Cut(string(b), " ")
	return first
}

// notification is one webhook delivery as the output keeps it.
type notification struct {
	Receiver string    `json:"receiver"`
	Received time.Time `json:"received"`
	Status   string    `json:"status"`
	Alerts   []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

func seconds(d time.Duration) *float64 {
	v := d.Round(100 * time.Millisecond).Seconds()
	return &v
}

// figures computes the run's figures from its timeline, the webhooks and
// Cascade's journal.
func (l *lab) figures(started time.Time, startLoad, killMechanism string, limit, remedy int64) Figures {
	o := l.opts
	f := Figures{
		Shape: o.Shape, DryRun: o.DryRun, Nodes: o.Nodes, Clusters: len(l.observers),
		Interval: o.Interval.String(), KillMechanism: killMechanism,
		MemoryLimitMiB: limit >> 20, RemedyLimitMiB: remedy >> 20,
		OOMKills:    l.tl.count(evFirstOOM) + l.tl.count(evOOMKill),
		WallSeconds: time.Since(started).Round(time.Second).Seconds(),
		LoadAverage: startLoad + " → " + loadAverage(),
	}
	if o.Shape == "region" {
		f.WebhookCacheTTL = o.WebhookCacheTTL.String()
	}
	firstOOM := l.tl.first(evFirstOOM, "*")
	fault := l.tl.first(evFault, "*")
	if fault.IsZero() {
		fault = l.tl.first(evDeploy, "*")
	}
	for _, e := range l.tl.all() {
		if (e.Name == evFirstOOM || e.Name == evOOMKill) && (fault.IsZero() || e.Time.Before(fault)) {
			f.OOMKillsBeforeFault++
		}
	}
	if l.hooks != nil {
		for _, m := range l.hooks.Received("page") {
			for _, a := range m.Alerts {
				if a.Labels["alertname"] != rules.IncidentAlert {
					f.SymptomsAtPager++
				}
			}
			if m.Status != "firing" {
				f.PageResolved = true
				continue
			}
			f.Pages++
			if len(m.Alerts) == 0 {
				continue
			}
			a := m.Alerts[0]
			if a.Labels[rules.ScopeLabel] == rules.ScopeCluster {
				f.ClusterScopedPages++
			}
			if f.Pages == 1 {
				f.PageRootCause, f.PageScope, f.PageShared = a.Labels[rules.RootCauseLabel], a.Labels[rules.ScopeLabel], a.Labels[rules.SharedLabel]
				f.PageSummary = a.Annotations["summary"]
				if !firstOOM.IsZero() {
					f.TimeToPageSeconds = seconds(m.Received.Sub(firstOOM))
				}
			}
		}
		f.Tickets = len(l.hooks.Received("ticket"))
	}
	if events, err := incident.Journal(l.journalDir()); err == nil {
		for _, e := range events {
			f.ClustersHit = max(f.ClustersHit, len(e.ClustersHit))
			if e.Phase == incident.Recovery {
				if real := l.tl.first(evRecovered, "*"); !real.IsZero() && f.TimeToDetectRecoverySeconds == nil {
					f.TimeToDetectRecoverySeconds = seconds(e.Time.Sub(real))
				}
			}
		}
		if f.ClustersHit == 0 && f.Pages > 0 && f.PageScope != "region" {
			f.ClustersHit = 1 // a cluster incident is about its one cluster
		}
	}
	if real := l.tl.first(evRecovered, "*"); !real.IsZero() && !firstOOM.IsZero() {
		f.RecoveryAfterFirstOOMSeconds = seconds(real.Sub(firstOOM))
	}
	firstNotReady := l.tl.first(evNotReady1, "*")
	var lastGuard time.Time
	for _, obs := range l.observers {
		if !obs.hitOnce() {
			continue
		}
		f.ClustersHitReal++
		if g := l.tl.first(evGuard, obs.cluster); !g.IsZero() {
			f.GuardClusters++
			if g.After(lastGuard) {
				lastGuard = g
			}
		}
	}
	if f.GuardClusters == f.ClustersHitReal && f.GuardClusters > 0 && !firstNotReady.IsZero() {
		f.GuardLeadSeconds = seconds(firstNotReady.Sub(lastGuard))
	}
	if l.gateway != nil {
		if from := fault; !from.IsZero() {
			f.GatewayBaselineRPS = l.gateway.meanBetween(from.Add(-time.Minute), from)
			peak, at := l.gateway.peakSince(from)
			f.GatewayPeakRPS = peak
			if !at.IsZero() {
				l.tl.addAt(at, evGatewayPeak, "", "gateway peak: %.0f requests/s over 10 s (%.0f/s in the minute before the fault)", peak, f.GatewayBaselineRPS)
			}
		}
	}
	if l.runUsage != nil {
		cpu, cores, rss := l.runUsage.summary()
		f.CascadeCPUSeconds, f.CascadeCPUPercent, f.CascadePeakRSSMiB = round1(cpu), round1(100*cores), round1(float64(rss)/(1<<20))
	}
	return f
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// check is one criterion of the "done when", and whether the run
// met it.
type check struct {
	What string
	OK   bool
	Got  string
}

// verdict checks a run against what it must show: the incident paged once
// as the OOM it is, within 60 s, nothing else at the pager (and for the
// region: one regional page for all its clusters, the guard first); a dry
// run pages nothing.
func verdict(f Figures) []check {
	if f.DryRun {
		return []check{
			{"no page", f.Pages == 0, fmt.Sprintf("%d pages", f.Pages)},
			{"no OOM kill", f.OOMKills == 0, fmt.Sprintf("%d OOM kills", f.OOMKills)},
		}
	}
	ttp := "never"
	if f.TimeToPageSeconds != nil {
		ttp = fmt.Sprintf("%.1f s", *f.TimeToPageSeconds)
	}
	checks := []check{
		{"the fault OOM-killed it, and nothing before", f.OOMKills > 0 && f.OOMKillsBeforeFault == 0, fmt.Sprintf("%d OOM kills, %d before the fault", f.OOMKills, f.OOMKillsBeforeFault)},
		{"exactly one page", f.Pages == 1, fmt.Sprintf("%d pages", f.Pages)},
		{"root cause " + rules.CauseOOM, f.PageRootCause == rules.CauseOOM, f.PageRootCause},
		{"paged within 60 s of the first OOM kill", f.TimeToPageSeconds != nil && *f.TimeToPageSeconds <= 60, ttp},
		{"no symptom alert at the pager", f.SymptomsAtPager == 0, fmt.Sprintf("%d", f.SymptomsAtPager)},
	}
	if f.Shape == "region" {
		guardOK := f.GuardClusters == f.ClustersHitReal && f.GuardClusters > 0
		guard := fmt.Sprintf("%d of %d hit clusters; no node was marked NotReady", f.GuardClusters, f.ClustersHitReal)
		if f.GuardLeadSeconds != nil {
			guardOK = guardOK && *f.GuardLeadSeconds >= 0
			guard = fmt.Sprintf("%d of %d hit clusters, the last %.1f s before the first NotReady", f.GuardClusters, f.ClustersHitReal, *f.GuardLeadSeconds)
		}
		checks = append(checks,
			check{"a regional page naming the regional API", f.PageScope == rules.ScopeRegion && f.PageShared == sharedAPI, f.PageScope + " " + f.PageShared},
			check{"every cluster hit, as Cascade names them", f.ClustersHit == f.Clusters, fmt.Sprintf("%d of %d", f.ClustersHit, f.Clusters)},
			check{"no per-cluster page", f.ClusterScopedPages == 0, fmt.Sprintf("%d", f.ClusterScopedPages)},
			check{"the guard on in every hit cluster before the first NotReady", guardOK, guard},
		)
	}
	return checks
}

// writeOutputs writes the run's files into the output dir: the real
// timeline beside Cascade's report of the same run, the figures, the
// notifications, Cascade's journal and the ground truth.
func (l *lab) writeOutputs(f Figures, checks []check) error {
	dir := l.opts.OutputDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	truth := filepath.Join(dir, "truth.json")
	if err := atomicfile.Write(truth, 0o644, l.tl.truth); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "figures.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "notifications.jsonl"), 0o644, l.writeNotifications); err != nil {
		return err
	}
	journal := filepath.Join(dir, "events.jsonl")
	events, err := os.ReadFile(filepath.Join(l.journalDir(), "events.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := atomicfile.WriteFile(journal, events, 0o644); err != nil {
		return err
	}
	cascadeReport := "No incident event in Cascade's journal.\n"
	if len(bytes.TrimSpace(events)) > 0 {
		out, err := exec.Command(l.cascade, "report", "--events", journal, "--truth", truth).CombinedOutput()
		if err != nil {
			return fmt.Errorf("cascade report: %w\n%s", err, out)
		}
		cascadeReport = string(out)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "report.md"), []byte(cascadeReport), 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "timeline.md"), 0o644, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		l.writeTimeline(bw, f, checks, cascadeReport)
		return bw.Flush()
	})
}

func (l *lab) writeNotifications(w io.Writer) error {
	var all []notification
	if l.hooks != nil {
		for _, receiver := range []string{"page", "guard", "ticket"} {
			for _, m := range l.hooks.Received(receiver) {
				n := notification{Receiver: receiver, Received: m.Received, Status: m.Status}
				for _, a := range m.Alerts {
					n.Alerts = append(n.Alerts, struct {
						Labels      map[string]string `json:"labels"`
						Annotations map[string]string `json:"annotations"`
					}{a.Labels, a.Annotations})
				}
				all = append(all, n)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b notification) int { return a.Received.Compare(b.Received) })
	enc := json.NewEncoder(w)
	for _, n := range all {
		if err := enc.Encode(n); err != nil {
			return err
		}
	}
	return nil
}

func (l *lab) writeTimeline(w io.Writer, f Figures, checks []check, cascadeReport string) {
	kind := "the outage"
	if f.DryRun {
		kind = "a dry run (no fault)"
	}
	fmt.Fprintf(w, "# The lab, %s shape: %s\n\n", f.Shape, kind)
	fmt.Fprintf(w, "%d cluster(s) of %d nodes, scrape and evaluation every %s. Command: `%s`. Machine: %s.\n\n",
		f.Clusters, f.Nodes, f.Interval, cmp.Or(l.opts.Command, "lab.Run"), machine())
	fmt.Fprintf(w, "What kills at the memory limit: %s.\n\n", f.KillMechanism)
	fmt.Fprintln(w, "## What really happened (the lab's own watch)")
	fmt.Fprintln(w)
	l.tl.markdown(w)
	fmt.Fprintln(w, "\n## Figures")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "|---|---|")
	row := func(k, v string) { fmt.Fprintf(w, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", `\|`)) }
	opt := func(v *float64) string {
		if v == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f s", *v)
	}
	row("time to page (from the first OOM kill)", opt(f.TimeToPageSeconds))
	row("time to detect recovery (Cascade's recovery event after the real one)", opt(f.TimeToDetectRecoverySeconds))
	row("real recovery after the first OOM kill", opt(f.RecoveryAfterFirstOOMSeconds))
	row("pages / root cause / scope", fmt.Sprintf("%d / %s / %s %s", f.Pages, f.PageRootCause, f.PageScope, f.PageShared))
	row("clusters hit (Cascade / real)", fmt.Sprintf("%d / %d", f.ClustersHit, f.ClustersHitReal))
	if f.GuardLeadSeconds != nil {
		row("guard in every hit cluster before the first NotReady by", opt(f.GuardLeadSeconds))
	}
	row("OOM kills", fmt.Sprint(f.OOMKills))
	row("memory limit, then after the remedy", fmt.Sprintf("%d MiB, %d MiB", f.MemoryLimitMiB, f.RemedyLimitMiB))
	if f.WebhookCacheTTL != "" {
		row("token webhook cache TTL", f.WebhookCacheTTL)
	}
	row("gateway requests/s: before the fault, peak", fmt.Sprintf("%.0f, %.0f", f.GatewayBaselineRPS, f.GatewayPeakRPS))
	row("cascade run: CPU, mean share of a core, peak RSS", fmt.Sprintf("%.1f s, %.1f %%, %.0f MiB", f.CascadeCPUSeconds, f.CascadeCPUPercent, f.CascadePeakRSSMiB))
	row("tickets (symptoms paged nowhere)", fmt.Sprint(f.Tickets))
	row("wall time of the run", fmt.Sprintf("%.0f s", f.WallSeconds))
	row("load average (1 min), start → end", f.LoadAverage)
	fmt.Fprintln(w, "\n## Verdict")
	fmt.Fprintln(w)
	for _, c := range checks {
		mark := "PASS"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "- %s %s (%s)\n", mark, c.What, c.Got)
	}
	fmt.Fprintln(w, "\n## Cascade's report of the same run (`cascade report --events events.jsonl --truth truth.json`)")
	fmt.Fprintln(w)
	// Its headings one level down, under this file's.
	for _, line := range strings.SplitAfter(cascadeReport, "\n") {
		if strings.HasPrefix(line, "#") {
			line = "##" + line
		}
		fmt.Fprint(w, line)
	}
}

// machine describes the machine the run was on.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var mem syscall.Sysinfo_t
	memory := ""
	if syscall.Sysinfo(&mem) == nil {
		memory = fmt.Sprintf(", %d GiB", uint64(mem.Totalram)*uint64(mem.Unit)>>30)
	}
	var uts syscall.Utsname
	kernel := ""
	if syscall.Uname(&uts) == nil {
		var b strings.Builder
		for _, c := range uts.Release {
			if c == 0 {
				break
			}
			b.WriteByte(byte(c))
		}
		kernel = ", Linux " + b.String()
	}
	return fmt.Sprintf("%d × %s%s%s", runtime.NumCPU(), model, memory, kernel)
}
