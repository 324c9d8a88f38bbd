package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/incident"
)

// Options are one run of the lab.
type Options struct {
	// Shape is "cluster" or "region".
	Shape string
	// Nodes per cluster; Clusters in the region shape.
	Nodes, Clusters int
	// DryRun injects no fault: deployments within the limit (and, in the
	// region, one cluster losing one node).
	DryRun bool
	// Interval is the scrape and evaluation interval of cascade run.
	Interval time.Duration
	// Baseline is how long the fleet runs healthy before the fault.
	Baseline time.Duration
	// RemedyAfter is how long after the first OOM kill the remedy comes.
	RemedyAfter time.Duration
	// AwaitResolve waits, after the recovery, for Cascade's recovery event
	// and the page's resolution; otherwise the run ends Settle after the
	// recovery (or the dry run's end).
	AwaitResolve bool
	Settle       time.Duration
	// MemoryLimit and RemedyLimit of the component that runs out of
	// memory; zero: sized from the fleet.
	MemoryLimit, RemedyLimit int64
	// WebhookCacheTTL of the region's API servers' token authenticator.
	WebhookCacheTTL time.Duration
	// Cascade is the cascade binary; empty: built into the work dir.
	Cascade string
	// OutputDir receives the timelines and figures.
	OutputDir string
	// KeepWorkDir keeps the components' data and logs.
	KeepWorkDir bool
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Out is where the timeline is printed as it happens.
	Out io.Writer
	// Command is how the run was started, for the output.
	Command string
}

// Region is the region label every series of the lab carries.
const Region = "lab"

// lab is one run: its work dir, the processes it started (stopped in
// reverse order at the end, by pid) and what it observed.
type lab struct {
	opts    Options
	dir     string
	out     io.Writer
	tl      *timeline
	cascade string

	cleanups []func()

	hooks      *testenv.Webhooks
	am         *testenv.Alertmanager
	logs       *testenv.VictoriaLogs
	runProc    *testenv.Process
	runAddr    string
	runUsage   *usage
	targetsDir string
	gateway    *gatewayRate

	// What runs out of memory: its limit, the remedy's, and what kills.
	limit, remedyLimit int64
	killMechanism      string

	oomMu     sync.Mutex
	observers []*observer
	// checks run every second beside the observers.
	checks []func(time.Time)
}

// atExit runs f when the lab ends, before what was set up earlier.
func (l *lab) atExit(f func()) { l.cleanups = append(l.cleanups, f) }

func (l *lab) cleanup() {
	for _, f := range slices.Backward(l.cleanups) {
		f()
	}
	l.cleanups = nil
}

// cgroupPrefix names the lab's memory cgroups: cascade-lab-PID-NAME, so a
// later run removes what a killed one left.
const cgroupPrefix = "cascade-lab"

func (l *lab) memoryLimit(name string, limit int64) (testenv.MemoryLimit, error) {
	m, err := testenv.NewMemoryLimit(fmt.Sprintf("%s-%d-%s", cgroupPrefix, os.Getpid(), name), limit)
	if err != nil {
		return nil, err
	}
	l.atExit(func() {
		if err := m.Remove(); err != nil {
			fmt.Fprintf(l.out, "lab: %v\n", err)
		}
	})
	return m, nil
}

// start starts a process of the lab's and stops it by pid at the end.
func (l *lab) start(name, bin string, args ...string) (*testenv.Process, error) {
	p, err := testenv.StartProcess(l.dir, name, bin, args...)
	if err != nil {
		return nil, err
	}
	l.atExit(p.Stop)
	return p, nil
}

// startAlerting starts the webhook recorder, Alertmanager with the routing
// `cascade rules alertmanager-config` writes, and the Loki-protocol store.
func (l *lab) startAlerting() error {
	hooks, err := testenv.StartWebhooks()
	if err != nil {
		return err
	}
	l.hooks = hooks
	l.atExit(hooks.Close)
	cmd := exec.Command(l.cascade, "rules", "alertmanager-config",
		"--receiver.page-url="+hooks.URL("page"),
		"--receiver.ticket-url="+hooks.URL("ticket"),
		"--receiver.automation-url="+hooks.URL("guard"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	amConfig, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("cascade rules alertmanager-config: %w: %s", err, stderr.String())
	}
	amDir := filepath.Join(l.dir, "alertmanager")
	if err := os.MkdirAll(amDir, 0o755); err != nil {
		return err
	}
	l.am, err = testenv.StartAlertmanager(amDir, string(amConfig))
	if err != nil {
		return err
	}
	l.atExit(l.am.Stop)
	vlDir := filepath.Join(l.dir, "victorialogs")
	if err := os.MkdirAll(vlDir, 0o755); err != nil {
		return err
	}
	l.logs, err = testenv.StartVictoriaLogs(vlDir)
	if err != nil {
		return err
	}
	l.atExit(l.logs.Stop)
	return nil
}

// startExporter starts `cascade exporter` with args and makes it a scrape
// target of cascade run with these target labels.
func (l *lab) startExporter(name string, labels map[string]string, args ...string) error {
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := l.start("exporter-"+name, l.cascade, append([]string{"exporter", "--web.listen-address=" + addr}, args...)...)
	if err != nil {
		return err
	}
	if err := waitHTTP(p, "http://"+addr+"/metrics", time.Minute); err != nil {
		return fmt.Errorf("exporter %s: %w\n%s", name, err, p.LogTail(2000))
	}
	group := []map[string]any{{"targets": []string{addr}, "labels": labels}}
	b, err := json.Marshal(group)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(l.targetsDir, name+".json"), b, 0o644)
}

// startCascadeRun starts cascade run scraping every exporter target (file
// discovery, so a replica added by the remedy is picked up as production's
// discovery would) and sending alerts to Alertmanager and events to the
// store. Its own exporters are off: it only scrapes.
func (l *lab) startCascadeRun(ctx context.Context) error {
	runDir := filepath.Join(l.dir, "cascade-run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	interval := fmt.Sprintf("%ds", int(l.opts.Interval.Seconds()))
	config := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: cascade
    file_sd_configs:
      - files: [%[2]q]
        refresh_interval: 5s
alerting:
  alertmanagers:
    - static_configs: [{targets: [%[3]q]}]
cascade:
  storage: {path: data}
  loki: {url: %[4]q}
`, interval, filepath.Join(l.targetsDir, "*.json"), strings.TrimPrefix(l.am.URL, "http://"), l.logs.LokiPushURL())
	cfgPath := filepath.Join(runDir, "cascade.yml")
	if err := atomicfile.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	l.runAddr = fmt.Sprintf("127.0.0.1:%d", port)
	p, err := testenv.StartProcess(runDir, "cascade-run", l.cascade, "run", "--config.file="+cfgPath,
		"--web.listen-address="+l.runAddr, "--no-exporter.nodelease", "--no-exporter.apimemory")
	if err != nil {
		return err
	}
	l.runProc = p
	l.atExit(p.Stop)
	if err := waitHTTP(p, "http://"+l.runAddr+"/-/ready", time.Minute); err != nil {
		return fmt.Errorf("cascade run: %w\n%s", err, p.LogTail(3000))
	}
	l.runUsage = &usage{pid: p.Pid()}
	go l.runUsage.run(ctx)
	return nil
}

// journalDir is where cascade run keeps its incident journal.
func (l *lab) journalDir() string { return filepath.Join(l.dir, "cascade-run", "data", "incidents") }

// followNotifications turns what reaches the webhooks and Cascade's
// journal into timeline lines as it arrives.
func (l *lab) followNotifications(ctx context.Context) {
	seen := map[string]int{}
	journaled := 0
	every(ctx, 250*time.Millisecond, func(time.Time) {
		for _, receiver := range []string{"page", "guard", "ticket"} {
			msgs := l.hooks.Received(receiver)
			for _, m := range msgs[seen[receiver]:] {
				l.noteNotification(receiver, m)
			}
			seen[receiver] = len(msgs)
		}
		events, err := incident.Journal(l.journalDir())
		if err != nil || len(events) <= journaled {
			return
		}
		for _, e := range events[journaled:] {
			what := fmt.Sprintf("Cascade: incident %s %s, root cause %s", e.Scope, e.Phase, e.RootCause)
			if e.Shared != "" {
				what += ", shared " + e.Shared
			}
			if len(e.ClustersHit) > 0 {
				what += fmt.Sprintf(", %d of %d clusters hit", len(e.ClustersHit), e.ClustersTotal)
			}
			l.tl.addAt(e.Time, evCascade, e.Cluster, "%s", what)
		}
		journaled = len(events)
	})
}

func (l *lab) noteNotification(receiver string, m testenv.WebhookMessage) {
	var names []string
	for _, a := range m.Alerts {
		about := a.Labels["alertname"]
		for _, k := range []string{rules.ScopeLabel, rules.RootCauseLabel, rules.SharedLabel, rules.ClusterLabel} {
			if v := a.Labels[k]; v != "" {
				about += " " + k + "=" + v
			}
		}
		names = append(names, about)
	}
	what := strings.Join(names, "; ")
	cluster := ""
	if len(m.Alerts) == 1 {
		cluster = m.Alerts[0].Labels["cluster"]
	}
	switch {
	case receiver == "page" && m.Status == "firing":
		l.tl.addAt(m.Received, evPage, "", "PAGE received: %s", what)
	case receiver == "page":
		l.tl.addAt(m.Received, evPageResolved, "", "page resolved: %s", what)
	case receiver == "guard" && m.Status == "firing":
		l.tl.addAt(m.Received, evGuard, cluster, "auto-heal guard received by the automation: %s", what)
	case receiver == "guard":
		l.tl.addAt(m.Received, "guard_resolved", cluster, "auto-heal guard resolved: %s", what)
	case m.Status == "firing":
		l.tl.addAt(m.Received, evTicket, cluster, "ticket (symptom without an incident): %s", what)
	}
}

// watch checks every observer each second until ctx ends, and records
// when every cluster hit was healthy again, for good (recoveredFor).
func (l *lab) watch(ctx context.Context) {
	var since time.Time
	every(ctx, time.Second, func(now time.Time) {
		healthy, hit := true, false
		for _, o := range l.observers {
			healthy = o.check(now) && healthy
			hit = hit || o.hitOnce()
		}
		for _, c := range l.checks {
			c(now)
		}
		switch {
		case !healthy:
			since = time.Time{}
		case since.IsZero():
			since = now
		}
		if healthy && hit && now.Sub(since) >= recoveredFor && l.tl.first(evRecovered, "*").IsZero() {
			l.tl.addAt(since, evRecovered, "", "RECOVERED: every node of every cluster Ready, every lease renewed, for %s since", recoveredFor)
		}
	})
}

// allHealthy reports whether every cluster's nodes are Ready with fresh
// leases.
func (l *lab) allHealthy() bool {
	now := time.Now()
	for _, o := range l.observers {
		o.mu.Lock()
		expect := o.expect
		o.mu.Unlock()
		if !o.state(now).healthy(expect) {
			return false
		}
	}
	return true
}

// status prints a one-line summary every 30 s, as the run goes.
func (l *lab) status(ctx context.Context, extra func() string) {
	every(ctx, 30*time.Second, func(now time.Time) {
		var parts []string
		for _, o := range l.observers {
			s := o.state(now)
			parts = append(parts, fmt.Sprintf("%s: %d/%d leases fresh, %d NotReady", o.cluster, s.fresh, s.leases, s.notReady))
		}
		line := fmt.Sprintf("           status: gateway %.0f req/s; %s", l.gateway.rate(), strings.Join(parts, "; "))
		if extra != nil {
			line += "; " + extra()
		}
		fmt.Fprintln(l.out, line)
	})
}

// every calls f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func(now time.Time)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f(now)
		}
	}
}

// startEtcd starts the lab's etcd in its own directory.
func (l *lab) startEtcd() (*testenv.Etcd, error) {
	dir := filepath.Join(l.dir, "etcd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	etcd, err := testenv.StartEtcd(dir)
	if err != nil {
		return nil, err
	}
	l.atExit(etcd.Stop)
	return etcd, nil
}

// waitHTTP waits until url answers 200, or p exits, or timeout.
func waitHTTP(p *testenv.Process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("exited: %v", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", url, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitUntil polls cond every 200 ms until it holds, ctx ends or timeout.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// sleep waits d unless ctx ends first; false if it did.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
