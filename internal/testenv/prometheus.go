package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server (Debian's) on loopback.
type Prometheus struct {
	URL  string
	proc *Process
}

// StartPrometheus starts Prometheus in dir with the given configuration file
// content and waits until it is ready. It also accepts remote write at
// URL+"/api/v1/write".
func StartPrometheus(dir, config string) (*Prometheus, error) {
	return StartPrometheusOn(dir, config, filepath.Join(dir, "data"))
}

// StartPrometheusOn is StartPrometheus with its TSDB at storagePath, an
// existing one (blocks written by Cascade's backtest, say) or a new one.
// Retention is unbounded so that old data is served, not deleted.
func StartPrometheusOn(dir, config, storagePath string) (*Prometheus, error) {
	bin, err := ToolPath("prometheus")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{URL: "http://127.0.0.1:" + itoa(port)}
	p.proc, err = startProcess(dir, "prometheus", bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+storagePath,
		"--storage.tsdb.retention.time=100y",
		"--web.listen-address=127.0.0.1:"+itoa(port),
		"--web.enable-lifecycle",
		"--web.enable-remote-write-receiver",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(p.proc, 30*time.Second, httpOK(http.DefaultClient, p.URL+"/-/ready", nil)); err != nil {
		p.proc.Kill()
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	return p, nil
}

// Stop stops Prometheus.
func (p *Prometheus) Stop() { p.proc.Stop() }

// Sample is one instant-vector element of a query result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant PromQL query through the HTTP API.
func (p *Prometheus) Query(ctx context.Context, query string) ([]Sample, error) {
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []Sample `json:"result"`
		} `json:"data"`
	}
	if err := p.getJSON(ctx, "/api/v1/query?query="+url.QueryEscape(query), &out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, out.Error)
	}
	return out.Data.Result, nil
}

// RangeSeries is one series of a range query result.
type RangeSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"` // [unix seconds, "value"]
}

// QueryRange runs a PromQL range query through the HTTP API.
func (p *Prometheus) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []RangeSeries `json:"result"`
		} `json:"data"`
	}
	v := url.Values{}
	v.Set("query", query)
	v.Set("start", fmt.Sprintf("%.3f", float64(start.UnixMilli())/1000))
	v.Set("end", fmt.Sprintf("%.3f", float64(end.UnixMilli())/1000))
	v.Set("step", fmt.Sprintf("%g", step.Seconds()))
	if err := p.getJSON(ctx, "/api/v1/query_range?"+v.Encode(), &out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, out.Error)
	}
	return out.Data.Result, nil
}

// Target is one active scrape target as /api/v1/targets reports it.
type Target struct {
	ScrapePool string `json:"scrapePool"`
	ScrapeURL  string `json:"scrapeUrl"`
	Health     string `json:"health"`
	LastError  string `json:"lastError"`
}

// Targets lists the active scrape targets.
func (p *Prometheus) Targets(ctx context.Context) ([]Target, error) {
	var out struct {
		Data struct {
			ActiveTargets []Target `json:"activeTargets"`
		} `json:"data"`
	}
	err := p.getJSON(ctx, "/api/v1/targets?state=active", &out)
	return out.Data.ActiveTargets, err
}

func (p *Prometheus) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// PrometheusOnForTest starts Prometheus with config on the TSDB at
// storagePath for t.
func PrometheusOnForTest(t testing.TB, config, storagePath string) *Prometheus {
	t.Helper()
	RequireLong(t)
	p, err := StartPrometheusOn(t.TempDir(), config, storagePath)
	if err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}
