package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// mtailProgram counts the same thing the exporter is checked against:
// lines, and requests by method and status, from the cascade_json format.
const mtailProgram = `# Lines, and requests by method and status, of a cascade_json nginx log.
counter cascade_bench_lines_total
counter cascade_bench_requests_total by method, code

/^/ {
  cascade_bench_lines_total++
}
/"method":"(?P<method>[A-Z]+)".*"status":"(?P<code>\d{3})"/ {
  cascade_bench_requests_total[$method][$code]++
}
`

// mtailResult is what mtail counted and what it cost.
type mtailResult struct {
	lines    uint64
	requests map[methodCode]uint64
	wall     time.Duration
	cpu      time.Duration
}

type methodCode struct{ method, code string }

// runMtail runs Debian's mtail once over the log in one-shot mode (read
// from start to end, print the counters as JSON, exit).
func runMtail(bin, logPath string) (mtailResult, error) {
	dir, err := os.MkdirTemp("", "cascade-bench-mtail-")
	if err != nil {
		return mtailResult{}, err
	}
	defer os.RemoveAll(dir)
	progs := filepath.Join(dir, "progs")
	if err := os.Mkdir(progs, 0o755); err != nil {
		return mtailResult{}, err
	}
	if err := os.WriteFile(filepath.Join(progs, "gateway.mtail"), []byte(mtailProgram), 0o644); err != nil {
		return mtailResult{}, err
	}
	// Even in one-shot mode mtail opens its HTTP listener: keep it on
	// loopback, on a free port.
	port, err := testenv.FreePort()
	if err != nil {
		return mtailResult{}, err
	}
	cmd := exec.Command(bin, "-one_shot", "-one_shot_format=json",
		"-progs", progs, "-logs", logPath,
		"-address=127.0.0.1", "-port="+strconv.Itoa(port),
		"-log_dir", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return mtailResult{}, fmt.Errorf("mtail: %w\n%s", err, tail(stderr.Bytes(), 2000))
	}
	res := mtailResult{
		requests: map[methodCode]uint64{},
		wall:     wall,
		cpu:      cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
	}
	var out map[string][]struct {
		LabelValues []struct {
			Labels []string
			Value  struct{ Value float64 }
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return mtailResult{}, fmt.Errorf("mtail output: %w\n%s", err, tail(stdout.Bytes(), 2000))
	}
	for _, m := range out["cascade_bench_lines_total"] {
		for _, lv := range m.LabelValues {
			res.lines += uint64(lv.Value.Value)
		}
	}
	for _, m := range out["cascade_bench_requests_total"] {
		for _, lv := range m.LabelValues {
			if len(lv.Labels) != 2 {
				return mtailResult{}, fmt.Errorf("mtail output: labels %v", lv.Labels)
			}
			res.requests[methodCode{lv.Labels[0], lv.Labels[1]}] += uint64(lv.Value.Value)
		}
	}
	return res, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
