// Command distributed measures what evaluating Cascade's rules on Thanos
// adds to the time to page, beside `cascade run` alone, on the same fault,
// and the remote-write delivery delay behind it.
//
// Each run starts one region of real clusters (testenv.RegionCluster: etcd,
// kube-apiserver, nginx as the gateway, kubelets renewing leases through
// it, `cascade exporter`), Thanos (Receive ring of 2 with replication
// factor 2, Query, Ruler) and three evaluators of the same rule files, each
// paging its own Alertmanager (the generated routing, its default 10 s
// group wait):
//
//   - local: `cascade run` scraping the exporters (target labels region
//     and cluster) into its embedded TSDB and evaluating there; it is also
//     the one that remote-writes everything it scrapes to Thanos Receive
//     (Prometheus's default queue settings: batches sent at the latest
//     every 5 s);
//   - query: a second `cascade run` scraping nothing, its rules reading
//     Thanos Query (cascade.query);
//   - thanos: the Thanos Ruler, reading Thanos Query.
//
// After a healthy minute one cluster's API server is OOM-killed (its cgroup
// counts one more oom_kill, the process gets SIGKILL) and the time from
// that moment to each path's page is taken. All along, Thanos Query is
// asked every 100 ms for the newest scrape of each exporter
// (timestamp(up)): each time a newer one shows, now minus its timestamp is
// one delivery delay (scrape to queryable in Thanos: remote-write batching,
// Receive and its replication, Query).
//
// Run it from the repository root after `make build` (make bench-distributed):
//
//	go run -tags slicelabels ./hack/bench/distributed [-runs=3] [-clusters=3] [-interval=15s]
//
// The report (Markdown) goes to stdout, progress to stderr. Everything it
// starts is stopped by pid on exit, on error and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
	"github.com/cascade-sre/cascade/rules/remotequery"
	"github.com/cascade-sre/cascade/rules/routing"
)

// The three evaluators, in the report's order.
var paths = []string{"local", "query", "thanos"}

var pathNames = map[string]string{
	"local":  "`cascade run` alone (embedded TSDB)",
	"query":  "`cascade run` on Thanos Query (cascade.query)",
	"thanos": "Thanos Ruler on Thanos Query",
}

type options struct {
	runs     int
	clusters int
	nodes    int
	interval time.Duration
	baseline time.Duration
	cascade  string
	keep     bool
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "faults to measure, each on a fresh region")
	flag.IntVar(&o.clusters, "clusters", 3, "clusters in the region")
	flag.IntVar(&o.nodes, "nodes", 20, "nodes per cluster")
	flag.DurationVar(&o.interval, "interval", 15*time.Second, "scrape and evaluation interval of every evaluator")
	flag.DurationVar(&o.baseline, "baseline", time.Minute, "healthy time before the fault")
	flag.StringVar(&o.cascade, "cascade", "bin/cascade", "the cascade binary (relative paths are from the repository root)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp directories (logs and data) for a look afterwards")
	flag.Parse()
	if o.runs < 1 || o.clusters < 1 || o.nodes < 1 {
		fmt.Fprintln(os.Stderr, "bench: -runs, -clusters and -nodes must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted; everything started was stopped")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// result is one run: each path's time to page, and the delivery delays seen.
type result struct {
	page   map[string]time.Duration
	delays []time.Duration
}

func run(ctx context.Context, o options) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(o.cascade) {
		o.cascade = filepath.Join(root, o.cascade)
	}
	if _, err := os.Stat(o.cascade); err != nil {
		return fmt.Errorf("%s: %w (run `make build` first)", o.cascade, err)
	}
	var ruleFiles []string
	for _, name := range rules.FileNames() {
		ruleFiles = append(ruleFiles, filepath.Join(root, "rules", name))
	}
	machine, loadStart := procstat.Machine(), procstat.LoadAverage()
	progress("machine: %s; load average %s", machine, loadStart)
	var results []result
	for i := range o.runs {
		r, err := oneRun(ctx, o, i+1, ruleFiles)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}
	report(o, machine, loadStart, procstat.LoadAverage(), results)
	return nil
}

func oneRun(ctx context.Context, o options, n int, ruleFiles []string) (res result, err error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("cascade-bench-distributed-%d-", n))
	if err != nil {
		return res, err
	}
	if o.keep {
		progress("[%d] logs and data in %s", n, dir)
	} else {
		defer os.RemoveAll(dir)
	}

	pages := newPageRecorder()
	defer pages.srv.Close()
	ams := map[string]*testenv.Alertmanager{}
	for _, p := range paths {
		ro := routing.DefaultOptions()
		ro.PageURL, ro.TicketURL, ro.AutomationURL = pages.url(p), pages.url("ignored"), pages.url("ignored")
		cfg, err := routing.AlertmanagerConfig(ro)
		if err != nil {
			return res, err
		}
		am, err := testenv.StartAlertmanager(mkdir(dir, "alertmanager-"+p), string(cfg))
		if err != nil {
			return res, err
		}
		defer am.Stop()
		ams[p] = am
	}
	th, err := testenv.StartThanos(mkdir(dir, "thanos"), testenv.ThanosRuleOptions{
		RuleFiles: ruleFiles, Alertmanagers: []string{ams["thanos"].URL}, EvalInterval: o.interval,
	})
	if err != nil {
		return res, err
	}
	defer th.Stop()
	progress("[%d] Thanos up; starting %d clusters of %d nodes", n, o.clusters, o.nodes)
	var clusters []*testenv.RegionCluster
	var targets strings.Builder
	for i := range o.clusters {
		name := fmt.Sprintf("eu1-%c", 'a'+i)
		c, err := testenv.StartRegionCluster(mkdir(dir, name), o.cascade, name, testenv.RegionClusterOptions{Nodes: o.nodes})
		if err != nil {
			return res, err
		}
		defer c.Stop()
		clusters = append(clusters, c)
		fmt.Fprintf(&targets, "      - {targets: [%q], labels: {region: eu-1, cluster: %s}}\n", c.ExporterAddr, name)
	}
	local, err := startRun(mkdir(dir, "run-local"), o.cascade, fmt.Sprintf(`global: {scrape_interval: %s, evaluation_interval: %s}
scrape_configs:
  - job_name: cascade-exporter
    static_configs:
%salerting:
  alertmanagers: [{static_configs: [{targets: [%q]}]}]
%scascade: {storage: {path: data}}
`, o.interval, o.interval, targets.String(), hostPort(ams["local"].URL), th.RemoteWriteConfig(remotequery.LocalNames.Value, 0)))
	if err != nil {
		return res, err
	}
	defer local.Stop()
	query, err := startRun(mkdir(dir, "run-query"), o.cascade, fmt.Sprintf(`global: {evaluation_interval: %s}
alerting:
  alertmanagers: [{static_configs: [{targets: [%q]}]}]
cascade: {storage: {path: data}, query: {url: %s}}
`, o.interval, hostPort(ams["query"].URL), th.Query.URL))
	if err != nil {
		return res, err
	}
	defer query.Stop()

	qc, err := api.NewClient(api.Config{Address: th.Query.URL})
	if err != nil {
		return res, err
	}
	qapi := v1.NewAPI(qc)
	sampling, stopSampling := context.WithCancel(ctx)
	delays := make(chan []time.Duration, 1)
	go func() { delays <- sampleDelays(sampling, qapi) }()

	progress("[%d] waiting for every cluster in Thanos, then a healthy %s", n, o.baseline)
	if err := waitUntil(ctx, 2*time.Minute, func() bool {
		v, _, err := qapi.Query(ctx, `count(cascade_node_leases{state="fresh"} > 0)`, time.Now())
		vec, _ := v.(model.Vector)
		return err == nil && len(vec) == 1 && int(vec[0].Value) == o.clusters
	}); err != nil {
		stopSampling()
		return res, fmt.Errorf("the clusters never showed healthy in Thanos Query: %w", err)
	}
	if err := sleep(ctx, o.baseline); err != nil {
		stopSampling()
		return res, err
	}
	if early := pages.first(); len(early) > 0 {
		stopSampling()
		return res, fmt.Errorf("paged while healthy: %v", early)
	}

	victim := clusters[len(clusters)/2]
	progress("[%d] OOM-killing the API server of %s", n, victim.Name)
	faultAt := time.Now()
	if err := victim.OOMKill(); err != nil {
		stopSampling()
		return res, err
	}
	err = waitUntil(ctx, 5*time.Minute, func() bool { return len(pages.first()) == len(paths) })
	stopSampling()
	res.delays = <-delays
	if err != nil {
		return res, fmt.Errorf("not every path paged (%v): %w", pages.first(), err)
	}
	res.page = map[string]time.Duration{}
	for p, at := range pages.first() {
		res.page[p] = at.Sub(faultAt)
	}
	progress("[%d] paged after: local %s, query %s, thanos %s", n, res.page["local"].Round(100*time.Millisecond),
		res.page["query"].Round(100*time.Millisecond), res.page["thanos"].Round(100*time.Millisecond))
	return res, nil
}

// sampleDelays asks Thanos Query every 100 ms for each exporter's newest
// scrape, and notes now minus its timestamp each time a newer one shows,
// until ctx ends.
func sampleDelays(ctx context.Context, qapi v1.API) []time.Duration {
	newest := map[string]model.Time{}
	var out []time.Duration
	for ctx.Err() == nil {
		v, _, err := qapi.Query(ctx, `timestamp(up{job="cascade-exporter"})`, time.Now())
		now := time.Now()
		if vec, ok := v.(model.Vector); err == nil && ok {
			for _, s := range vec {
				key := string(s.Metric["cluster"])
				ts := model.TimeFromUnixNano(int64(float64(s.Value) * 1e9))
				if old, seen := newest[key]; seen && ts > old {
					out = append(out, now.Sub(ts.Time()))
				}
				newest[key] = max(newest[key], ts)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return out
}

// pageRecorder takes the Alertmanagers' webhooks and keeps the first
// notification of each path's paging receiver.
type pageRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	at  map[string]time.Time
}

func newPageRecorder() *pageRecorder {
	r := &pageRecorder{at: map[string]time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		path := strings.TrimPrefix(req.URL.Path, "/")
		r.mu.Lock()
		if _, ok := r.at[path]; !ok && slices.Contains(paths, path) {
			r.at[path] = time.Now()
		}
		r.mu.Unlock()
	}))
	return r
}

func (r *pageRecorder) url(path string) string { return r.srv.URL + "/" + path }

// first is when each path paged first, for those that did.
func (r *pageRecorder) first() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range r.at {
		out[k] = v
	}
	return out
}

// startRun starts `cascade run` in dir with config, its own exporters off.
func startRun(dir, bin, config string) (*testenv.Process, error) {
	cfg := filepath.Join(dir, "cascade.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	p, err := testenv.StartProcess(dir, "cascade-run", bin, "run", "--config.file="+cfg,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--no-exporter.nodelease", "--no-exporter.apimemory")
	if err != nil {
		return nil, err
	}
	if err := waitUntil(context.Background(), 30*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		p.Kill()
		return nil, fmt.Errorf("cascade run in %s: %w\n%s", dir, err, p.LogTail(3000))
	}
	return p, nil
}

func report(o options, machine, loadStart, loadEnd string, results []result) {
	fmt.Printf("Time to page on one cluster's API server OOM kill (%d clusters of %d nodes, scrape and evaluation every %s, group wait 10 s):\n\n",
		o.clusters, o.nodes, o.interval)
	fmt.Print("| evaluator |")
	for i := range results {
		fmt.Printf(" run %d |", i+1)
	}
	fmt.Print(" median | vs alone |\n|---|")
	for range results {
		fmt.Print("---:|")
	}
	fmt.Print("---:|---:|\n")
	alone := median(pageTimes(results, "local"))
	for _, p := range paths {
		fmt.Printf("| %s |", pathNames[p])
		for _, r := range results {
			fmt.Printf(" %.1f s |", r.page[p].Seconds())
		}
		m := median(pageTimes(results, p))
		fmt.Printf(" %.1f s | %+.1f s |\n", m.Seconds(), (m - alone).Seconds())
	}
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.delays...)
	}
	slices.Sort(all)
	fmt.Printf("\nRemote-write delivery delay, scrape to queryable in Thanos Query (Prometheus's default queue: batches at the latest every 5 s), %d samples:\n\n", len(all))
	fmt.Println("| min | median | p90 | max |\n|---:|---:|---:|---:|")
	if len(all) > 0 {
		fmt.Printf("| %.1f s | %.1f s | %.1f s | %.1f s |\n", all[0].Seconds(), quantile(all, 0.5).Seconds(), quantile(all, 0.9).Seconds(), all[len(all)-1].Seconds())
	}
	fmt.Printf("\nMachine: %s; load average %s at the start, %s at the end.\n", machine, loadStart, loadEnd)
}

func pageTimes(results []result, path string) []time.Duration {
	var out []time.Duration
	for _, r := range results {
		out = append(out, r.page[path])
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return quantile(s, 0.5)
}

// quantile of sorted durations, the nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	_ = os.MkdirAll(d, 0o755)
	return d
}

func hostPort(url string) string { return strings.TrimPrefix(url, "http://") }

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format(time.TimeOnly)}, args...)...)
}
