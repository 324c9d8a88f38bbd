package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRuntimeDefaults: the exporter collects at GOGC=50 and runs on one
// processor, cascade run collects at Prometheus's 75 on every processor,
// and $GOGC and $GOMAXPROCS win over the defaults.
func TestRuntimeDefaults(t *testing.T) {
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	require.NoError(t, os.WriteFile(accessLog, nil, 0o644))
	gatewayOnly := []string{"--no-exporter.nodelease", "--no-exporter.apimemory", "--exporter.gateway", "--gateway.log=nginx-json:" + accessLog}
	runConfig := writeRunConfig(t, dir, "cascade:\n  storage: {path: data}\n")
	for _, tc := range []struct {
		name      string
		bin       func(*testing.T) string
		args      []string
		env       string
		wantGOGC  string
		wantProcs string // "": not checked
	}{
		{"cascade exporter", cascadeBinary, append([]string{"exporter"}, gatewayOnly...), "", "50", "1"},
		{"cascade-exporter", exporterBinary, gatewayOnly, "", "50", "1"},
		{"cascade-exporter with GOGC", exporterBinary, gatewayOnly, "GOGC=120", "120", "1"},
		{"cascade-exporter with GOMAXPROCS", exporterBinary, gatewayOnly, "GOMAXPROCS=2", "50", "2"},
		{"cascade run", cascadeBinary, []string{"run", "--config.file=" + runConfig, "--no-exporter.nodelease", "--no-exporter.apimemory"}, "", "75", ""},
		{"cascade run with GOGC", cascadeBinary, []string{"run", "--config.file=" + runConfig, "--no-exporter.nodelease", "--no-exporter.apimemory"}, "GOGC=90", "90", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			cmd := exec.Command(tc.bin(t), append(tc.args, "--web.listen-address="+addr)...)
			cmd.Dir = dir
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("log:\n%s", log.String())
				}
			})
			var got string
			require.Eventually(t, func() bool {
				got = gauge(t, "http://"+addr+"/metrics", "go_gc_gogc_percent")
				return got != ""
			}, 30*time.Second, 50*time.Millisecond, "no go_gc_gogc_percent served")
			require.Equal(t, tc.wantGOGC, got)
			if tc.wantProcs != "" {
				require.Equal(t, tc.wantProcs, gauge(t, "http://"+addr+"/metrics", "go_sched_gomaxprocs_threads"))
			}
		})
	}
}

// gauge returns the value of an unlabelled series in the exposition at
// url, or "" while there is none.
func gauge(t *testing.T, url, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if value, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return value
		}
	}
	return ""
}
