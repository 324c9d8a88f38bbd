package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// selfScrapeConfig is a configuration of `cascade run` listening on addr
// that scrapes itself and evaluates the embedded rules every second, with
// its data in ./data; its last line is in the cascade section.
func selfScrapeConfig(addr string) string {
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: self
    static_configs: [{targets: [%q]}]
cascade:
  storage: {path: data}
`, addr)
}

// TestRunReloadsAndKeepsOldConfigOnError starts `cascade run`, reloads it
// with a good and then a broken configuration (by HTTP and by SIGHUP), and
// stops it with SIGTERM.
func TestRunReloadsAndKeepsOldConfigOnError(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	// writeConfig writes the configuration and returns its path.
	writeConfig := func(extra string) string { return writeRunConfig(t, dir, selfScrapeConfig(addr)+extra) }
	proc := startRun(t, bin, dir, writeConfig(""), addr, "--web.enable-lifecycle")

	metric := func(name string) string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return metric("cascade_config_last_reload_successful") == "1" }, 30*time.Second, 100*time.Millisecond)
	// It scrapes itself into its TSDB and evaluates the embedded rules.
	require.Eventually(t, func() bool {
		v := metric(`prometheus_rule_evaluations_total`)
		return v != "" && v != "0"
	}, 30*time.Second, 200*time.Millisecond, "the engine never evaluated")

	post := func() (int, string) {
		resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := post()
	require.Equal(t, http.StatusOK, code)

	// A broken rule file: the reload fails, says why, and nothing changes.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yml"), []byte("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum(\n"), 0o644))
	writeConfig("rule_files: [bad.yml]\n")
	code, body := post()
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "bad.yml")
	require.Equal(t, "0", metric("cascade_config_last_reload_successful"))
	require.NotEmpty(t, metric(`prometheus_rule_group_rules{rule_group="embedded:incident.yml;cascade-incident"}`), "the embedded rules still run")

	// A config error through SIGHUP: logged with its line, old config kept.
	writeConfig("  retension: 2d\n")
	require.NoError(t, syscall.Kill(proc.Pid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(proc.LogTail(4000), "line 9") }, 10*time.Second, 100*time.Millisecond)

	// Fixed again: the reload succeeds.
	writeConfig("")
	code, _ = post()
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "1", metric("cascade_config_last_reload_successful"))

	proc.Stop()
	require.Contains(t, proc.LogTail(2000), "cascade run stopped")
}

// TestRunStopsWhenAPartFails removes the data directory under a running
// `cascade run`: the collector fails, and the process stops with a non-zero
// status and the error in its log, as Prometheus does when a part of it
// fails, instead of running on blind.
func TestRunStopsWhenAPartFails(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, selfScrapeConfig(addr))
	logFile, err := os.Create(filepath.Join(dir, "cascade-run.log"))
	require.NoError(t, err)
	defer logFile.Close()
	log := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(bin, "run", "--config.file="+cfgPath, "--web.listen-address="+addr,
		"--no-exporter.nodelease", "--no-exporter.apimemory")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	require.Eventually(t, func() bool { return scrapeValue(t, addr, "prometheus_tsdb_head_samples_appended_total") > 0 },
		30*time.Second, 100*time.Millisecond, "cascade run never scraped itself")

	require.NoError(t, os.RemoveAll(filepath.Join(dir, "data")))
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "cascade run exited 0 after a part failed:\n%s", log())
		require.Equal(t, 1, exit.ExitCode())
		require.Contains(t, log(), "collector: the data directory "+filepath.Join(dir, "data")+" fails")
	case <-time.After(60 * time.Second):
		t.Fatalf("cascade run went on without its data directory:\n%s", log())
	}
}

// TestRunRefusesWhatItWouldIgnore: a section cascade run does not act on,
// and the cascade.tracing section of earlier versions, stop it at start
// with the line, the section and what to use instead.
func TestRunRefusesWhatItWouldIgnore(t *testing.T) {
	bin := cascadeBinary(t)
	for name, tc := range map[string]struct{ section, want string }{
		"cascade.tracing": {"  tracing: {endpoint: otel:4318, insecure: true}\n", "line 4: cascade.tracing is replaced by Prometheus's own top-level tracing: section"},
		"remote_read":     {"remote_read: [{url: http://p:9090/api/v1/read}]\n", "line 4: remote_read: cascade run does not read through remote_read: to have the rules read a remote Prometheus-compatible store, set cascade.query"},
		"storage":         {"storage: {tsdb: {out_of_order_time_window: 5m}}\n", "line 4: storage: cascade run keeps its TSDB as cascade.storage says"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := writeRunConfig(t, dir, "global: {}\ncascade:\n  storage: {path: data}\n"+tc.section)
			for _, check := range []bool{true, false} {
				args := []string{"run", "--config.file=" + cfgPath, "--no-exporter.nodelease", "--no-exporter.apimemory", "--web.listen-address=" + freeAddr(t)}
				if check {
					args = append(args, "--config.check")
				}
				out, err := exec.Command(bin, args...).CombinedOutput()
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "%s", out)
				require.Equal(t, 1, exit.ExitCode())
				require.Contains(t, string(out), tc.want)
				require.Contains(t, string(out), cfgPath)
			}
		})
	}
}
