package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cascade-sre/cascade/hack/bench/procstat"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// server is cascade run or Prometheus, started by this program.
type server struct {
	name    string
	proc    *testenv.Process
	metrics string // URL of its own /metrics
	startup time.Duration
}

func (s *server) pid() int { return s.proc.Pid() }

// scrapeConfig is the part of the configuration both servers share: the
// fleet target scraped every interval, rules evaluated every interval. A
// single cluster's target gets the target label cluster="bench"; a region's
// series carry their own region, cluster and shared labels.
func scrapeConfig(target string, interval time.Duration, region bool) string {
	labels := "{cluster: bench}"
	if region {
		labels = "{}"
	}
	return fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[3]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: cascade-fleet
    static_configs:
      - targets: [%[2]q]
        labels: %[4]s
`, interval, target, min(interval, 10*time.Second), labels)
}

// Both servers start with their executables dropped from the page cache,
// as in a new pod (see procstat.DropFromPageCache).

// startCascade starts `cascade run` with its exporters off, scraping the
// fleet into its embedded TSDB and evaluating its embedded rules (rules/*.yml
// built into the binary).
func startCascade(dir, bin, target string, interval time.Duration, region, pprof bool) (*server, error) {
	if err := procstat.DropFromPageCache(bin); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := scrapeConfig(target, interval, region) + fmt.Sprintf(`cascade:
  storage:
    path: %q
    retention: 1d
`, filepath.Join(dir, "cascade-data"))
	cfgPath := filepath.Join(dir, "cascade.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{"run", "--config.file=" + cfgPath, "--web.listen-address=" + addr,
		"--no-exporter.nodelease", "--no-exporter.apimemory"}
	if pprof {
		args = append(args, "--web.enable-pprof")
	}
	start := time.Now()
	p, err := testenv.StartProcess(dir, "cascade-run", bin, args...)
	if err != nil {
		return nil, err
	}
	s := &server{name: nameCascade, proc: p, metrics: "http://" + addr + "/metrics"}
	if err := waitReady(p, "http://"+addr+"/-/ready"); err != nil {
		p.Kill()
		return nil, err
	}
	s.startup = time.Since(start)
	return s, nil
}

// startPrometheus starts Debian's Prometheus with the same scrape
// configuration and the repository's rule files.
func startPrometheus(dir, bin, target string, interval time.Duration, region bool, ruleFiles []string) (*server, error) {
	if err := procstat.DropFromPageCache(bin); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := scrapeConfig(target, interval, region) + "rule_files:\n"
	for _, f := range ruleFiles {
		cfg += fmt.Sprintf("  - %q\n", f)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	start := time.Now()
	p, err := testenv.StartProcess(dir, "prometheus", bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
		"--storage.tsdb.retention.time=1d",
		"--web.listen-address="+addr,
	)
	if err != nil {
		return nil, err
	}
	s := &server{name: namePrometheus, proc: p, metrics: "http://" + addr + "/metrics"}
	if err := waitReady(p, "http://"+addr+"/-/ready"); err != nil {
		p.Kill()
		return nil, err
	}
	s.startup = time.Since(start)
	return s, nil
}

func waitReady(p *testenv.Process, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if err == nil && resp.StatusCode == http.StatusOK {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited while starting:\n%s", p.Name, p.LogTail(3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60s:\n%s", p.Name, p.LogTail(3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ruleFilesOf lists the repository's rule files, the ones embedded in
// cascade.
func ruleFilesOf(root string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(root, "rules", "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files in %s", filepath.Join(root, "rules"))
	}
	return files, nil
}

// selfMetrics reads a server's /metrics into "name{labels}" → value.
func selfMetrics(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseText(string(b)), nil
}

// parseText reads the Prometheus text format, enough for self-metrics:
// one sample a line, no timestamps, label values without spaces that
// matter (the series key is kept whole).
func parseText(text string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// sumFamily adds every series of one family.
func sumFamily(m map[string]float64, name string) (float64, bool) {
	var sum float64
	found := false
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
			found = true
		}
	}
	return sum, found
}

// byLabel returns one family's series by the value of one label.
func byLabel(m map[string]float64, name, label string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		labels, ok := strings.CutPrefix(k, name)
		if !ok || !strings.HasPrefix(labels, "{") {
			continue
		}
		_, rest, ok := strings.Cut(labels, "{"+label+`="`)
		if !ok {
			_, rest, ok = strings.Cut(labels, ","+label+`="`)
		}
		if !ok {
			continue
		}
		value, _, ok := strings.Cut(rest, `"`)
		if ok {
			out[value] = v
		}
	}
	return out
}

// firingAlerts asks Prometheus at base for its firing alerts, counted by
// name: what the evaluation measured had to work through.
func firingAlerts(ctx context.Context, base string) (map[string]float64, error) {
	prom := &testenv.Prometheus{URL: base}
	samples, err := prom.Query(ctx, `count by (alertname) (ALERTS{alertstate="firing"})`)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range samples {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, fmt.Errorf("firing alerts: value %v of %v", s.Value[1], s.Metric)
		}
		out[s.Metric["alertname"]] = v
	}
	return out, nil
}
