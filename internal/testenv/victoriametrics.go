package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// VictoriaMetrics is a real VictoriaMetrics single-node server on loopback:
// it takes remote write and imports, and answers the Prometheus query API
// (MetricsQL) at URL.
type VictoriaMetrics struct {
	URL  string // http://127.0.0.1:PORT, the base of /api/v1/query
	proc *Process
}

// StartVictoriaMetrics starts VictoriaMetrics with its data in dir, keeping
// data of any age (scenarios are dated in the past), and waits until it is
// healthy. Its other settings are its defaults, as a user would run it.
func StartVictoriaMetrics(dir string) (*VictoriaMetrics, error) {
	bin, err := ToolPath("victoria-metrics")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	v := &VictoriaMetrics{URL: "http://127.0.0.1:" + itoa(port)}
	v.proc, err = startProcess(dir, "victoria-metrics", bin,
		"-httpListenAddr=127.0.0.1:"+itoa(port),
		"-storageDataPath="+filepath.Join(dir, "data"),
		"-retentionPeriod=100y",
		"-loggerLevel=WARN",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(v.proc, 30*time.Second, httpOK(http.DefaultClient, v.URL+"/health", nil)); err != nil {
		v.proc.Kill()
		return nil, fmt.Errorf("victoria-metrics: %w", err)
	}
	return v, nil
}

// RemoteWriteURL takes Prometheus remote write.
func (v *VictoriaMetrics) RemoteWriteURL() string { return v.URL + "/api/v1/write" }

// ImportPrometheus imports samples in the Prometheus or OpenMetrics text
// format (with timestamps), then flushes them so that queries see them at
// once.
func (v *VictoriaMetrics) ImportPrometheus(ctx context.Context, body io.Reader) error {
	if err := v.post(ctx, "/api/v1/import/prometheus", body); err != nil {
		return err
	}
	return v.Flush(ctx)
}

// Flush makes everything written so far visible to queries (VictoriaMetrics
// otherwise buffers recent samples for a second or so).
func (v *VictoriaMetrics) Flush(ctx context.Context) error {
	return v.post(ctx, "/internal/force_flush", nil)
}

func (v *VictoriaMetrics) post(ctx context.Context, path string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL+path, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2000))
		return fmt.Errorf("victoria-metrics %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// Stop stops VictoriaMetrics by its pid.
func (v *VictoriaMetrics) Stop() { v.proc.Stop() }

// VictoriaMetricsForTest starts VictoriaMetrics for t and stops it when t ends.
func VictoriaMetricsForTest(t testing.TB) *VictoriaMetrics {
	t.Helper()
	RequireLong(t)
	v, err := StartVictoriaMetrics(t.TempDir())
	if err != nil {
		t.Fatalf("start victoria-metrics: %v", err)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("victoria-metrics log tail:\n%s", v.proc.LogTail(2000))
		}
	})
	return v
}
