package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// VictoriaLogs is a real VictoriaLogs server on loopback: a log store that
// takes the Loki push API and answers LogsQL queries. It can be stopped and
// started again on the same port and data, as a store that goes down.
type VictoriaLogs struct {
	Dir string
	URL string // http://127.0.0.1:PORT

	port int
	mu   sync.Mutex
	proc *Process
}

// StartVictoriaLogs starts VictoriaLogs with its data in dir and waits until
// it answers /health.
func StartVictoriaLogs(dir string) (*VictoriaLogs, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	v := &VictoriaLogs{Dir: dir, URL: "http://127.0.0.1:" + itoa(port), port: port}
	if err := v.Start(); err != nil {
		return nil, err
	}
	return v, nil
}

// Start starts the server (again) and waits until it is healthy.
func (v *VictoriaLogs) Start() error {
	bin, err := ToolPath("victoria-logs")
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil && !v.proc.Exited() {
		return fmt.Errorf("victoria-logs already running (pid %d)", v.proc.Pid())
	}
	p, err := startProcess(v.Dir, "victoria-logs", bin,
		"-httpListenAddr=127.0.0.1:"+itoa(v.port),
		"-storageDataPath="+filepath.Join(v.Dir, "data"),
		"-retentionPeriod=100y",
		// Keep each pushed line whole in _msg, so tests can compare what
		// arrived with what was sent (JSON lines would be split into fields).
		"-loki.disableMessageParsing",
		"-loggerLevel=WARN",
	)
	if err != nil {
		return err
	}
	if err := waitFor(p, 30*time.Second, httpOK(http.DefaultClient, v.URL+"/health", nil)); err != nil {
		p.Kill()
		return fmt.Errorf("victoria-logs: %w", err)
	}
	v.proc = p
	return nil
}

// Stop stops the server by its pid (SIGTERM, then SIGKILL).
func (v *VictoriaLogs) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil {
		v.proc.Stop()
	}
}

// Pid is the server's process id.
func (v *VictoriaLogs) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proc.Pid()
}

// LokiPushURL is the endpoint that takes the Loki push API.
func (v *VictoriaLogs) LokiPushURL() string { return v.URL + "/insert/loki/api/v1/push" }

// Query runs a LogsQL query over all time and returns the matching log
// entries, each as its fields (_msg, _time, _stream and the stream labels).
func (v *VictoriaLogs) Query(ctx context.Context, logsql string) ([]map[string]string, error) {
	form := url.Values{"query": {logsql}, "start": {"0"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL+"/select/logsql/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		if sc.Scan() {
			b.WriteString(sc.Text())
		}
		return nil, fmt.Errorf("logsql query %q: %s: %s", logsql, resp.Status, b.String())
	}
	var out []map[string]string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var entry map[string]string
		if err := json.Unmarshal(line, &entry); err != nil {
			return nil, fmt.Errorf("logsql query %q: %w", logsql, err)
		}
		out = append(out, entry)
	}
	return out, sc.Err()
}

// VictoriaLogsForTest starts VictoriaLogs for t and stops it when t ends.
func VictoriaLogsForTest(t testing.TB) *VictoriaLogs {
	t.Helper()
	RequireLong(t)
	v, err := StartVictoriaLogs(t.TempDir())
	if err != nil {
		t.Fatalf("start victoria-logs: %v", err)
	}
	t.Cleanup(v.Stop)
	return v
}
