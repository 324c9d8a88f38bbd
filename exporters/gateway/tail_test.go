package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/tail"
)

// leaseLine is a node lease renewal as nginx logs it. Every line has the
// same length and the same last 32 bytes, the hardest case for telling a
// rewritten file from the one read before.
func leaseLine(i int) string {
	return fmt.Sprintf(`{"time":"2026-03-14T23:48:01+01:00","msec":"%d.000","method":"PUT",`+
		`"uri":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-%06d?timeout=10s",`+
		`"status":"200","request_time":"0.004","upstream_status":"200","user_agent":"kubelet/v1.37.2 (linux/amd64) kubernetes/abc123"}`+"\n",
		1773528481+i, i)
}

func leaseLines(from, to int) []byte {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(leaseLine(i))
	}
	return []byte(b.String())
}

type tailEnv struct {
	dir, log, positions string
}

func newTailEnv(t *testing.T) tailEnv {
	dir := t.TempDir()
	return tailEnv{dir: dir, log: filepath.Join(dir, "access.log"), positions: filepath.Join(dir, "positions.json")}
}

func (env tailEnv) exporter(t *testing.T, mutate ...func(*Config)) *Exporter {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: env.log}}
	cfg.PositionsFile = env.positions
	cfg.PositionsInterval = 50 * time.Millisecond
	cfg.PollInterval = 10 * time.Millisecond
	cfg.RotationGrace = 150 * time.Millisecond
	cfg.FromBeginning = true
	for _, m := range mutate {
		m(&cfg)
	}
	e, err := New(cfg, testLogger(t))
	require.NoError(t, err)
	return e
}

func metric(t *testing.T, e *Exporter, key string) float64 {
	t.Helper()
	return scrape(t, exporterCollector{e})[key]
}

// savedPositions reads the positions file; a missing one is empty (the
// exporter writes it at its first interval).
func savedPositions(t *testing.T, path string) tail.PositionsFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return tail.PositionsFile{}
	}
	require.NoError(t, err)
	var pf tail.PositionsFile
	require.NoError(t, json.Unmarshal(b, &pf))
	return pf
}

func TestRenameRotation(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 100))
	e := env.exporter(t)
	runExporter(t, e)
	waitLines(t, e, 100, 0)

	// logrotate renames; the writer goes on writing to the old file until it
	// reopens, and a partial line there is finished late.
	require.NoError(t, os.Rename(env.log, env.log+".1"))
	appendFile(t, env.log+".1", leaseLines(100, 150))
	half := leaseLine(150)
	appendFile(t, env.log+".1", []byte(half[:40]))
	waitFor(t, 5*time.Second, "the rename to be seen", func() bool {
		return metric(t, e, `cascade_gateway_log_rotations_total{kind="rename",path="`+env.log+`"}`) == 1
	})
	appendFile(t, env.log, leaseLines(1000, 1200))
	appendFile(t, env.log+".1", []byte(half[40:]))
	waitLines(t, e, 351, 0)
	require.Equal(t, 351.0, metric(t, e, req(leaseRoute, "PUT", "200", "kubelet")))

	// After the grace period the old file is let go; only the new one is
	// in the positions.
	waitFor(t, 5*time.Second, "the rotated file to be released", func() bool {
		pf := savedPositions(t, env.positions)
		return len(pf.Files) == 1 && !pf.Files[0].Rotated
	})
	require.Equal(t, int64(len(leaseLines(1000, 1200))), savedPositions(t, env.positions).Files[0].Offset)
	lintClean(t, e)
}

func TestCopyTruncate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []byte
	}{
		// Shorter than before: seen from the size.
		{"shrunk", leaseLines(1000, 1010)},
		// Longer than before, written before the next poll can see the
		// file empty: seen from the fingerprints.
		{"regrown", leaseLines(1000, 1300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTailEnv(t)
			appendFile(t, env.log, leaseLines(0, 200))
			e := env.exporter(t, func(c *Config) { c.PollInterval = 300 * time.Millisecond })
			runExporter(t, e)
			waitLines(t, e, 200, 0)

			// copytruncate: copy, then truncate in place, and the writer goes
			// on at the new end.
			data, err := os.ReadFile(env.log)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(env.log+".1", data, 0o644))
			f, err := os.OpenFile(env.log, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			require.NoError(t, f.Truncate(0))
			_, err = f.Write(tc.after)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			n := float64(bytes.Count(tc.after, []byte("\n")))
			waitLines(t, e, 200+n, 0)
			require.Equal(t, 1.0, metric(t, e, `cascade_gateway_log_rotations_total{kind="truncate",path="`+env.log+`"}`))
			// Nothing more arrives later (no double counting): waiting
			// two polls and more is the test.
			time.Sleep(700 * time.Millisecond)
			require.Equal(t, 200+n, metric(t, e, `cascade_gateway_log_lines_total{result="parsed"}`))
		})
	}
}

// TestRestart stops the exporter and starts another on the same positions
// file after various things happened in between: every line is counted by
// exactly one of the two.
func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// whileDown changes the log while no exporter runs and returns how
		// many lines the second exporter must count.
		whileDown func(t *testing.T, env tailEnv) int
		// beforeStart writes to the log before the first exporter starts,
		// after the 100 lines it counts.
		beforeStart func(t *testing.T, env tailEnv)
		// beforeStop runs while the first exporter still runs.
		beforeStop func(t *testing.T, env tailEnv, e *Exporter)
	}{{
		name: "appended",
		whileDown: func(t *testing.T, env tailEnv) int {
			appendFile(t, env.log, leaseLines(100, 170))
			return 70
		},
	}, {
		name: "partial line finished while down",
		beforeStart: func(t *testing.T, env tailEnv) {
			// Read in the same pass as the 100 lines before it, so the
			// first exporter has seen it once it counted them.
			l := leaseLine(100)
			appendFile(t, env.log, []byte(l[:77]))
		},
		whileDown: func(t *testing.T, env tailEnv) int {
			l := leaseLine(100)
			appendFile(t, env.log, []byte(l[77:]))
			appendFile(t, env.log, leaseLines(101, 110))
			return 10
		},
	}, {
		name: "renamed while down",
		whileDown: func(t *testing.T, env tailEnv) int {
			appendFile(t, env.log, leaseLines(100, 120))
			require.NoError(t, os.Rename(env.log, env.log+".1"))
			appendFile(t, env.log+".1", leaseLines(120, 125))
			appendFile(t, env.log, leaseLines(1000, 1040))
			return 65
		},
	}, {
		name: "stopped while draining a rotated file",
		beforeStop: func(t *testing.T, env tailEnv, e *Exporter) {
			require.NoError(t, os.Rename(env.log, env.log+".1"))
			waitFor(t, 5*time.Second, "the rename to be seen", func() bool {
				return metric(t, e, `cascade_gateway_log_rotations_total{kind="rename",path="`+env.log+`"}`) == 1
			})
		},
		whileDown: func(t *testing.T, env tailEnv) int {
			// The writer finishes the old file, logrotate moves it once more.
			appendFile(t, env.log+".1", leaseLines(100, 130))
			require.NoError(t, os.Rename(env.log+".1", env.log+".2"))
			appendFile(t, env.log, leaseLines(1000, 1020))
			return 50
		},
	}, {
		name: "copytruncated and regrown while down",
		whileDown: func(t *testing.T, env tailEnv) int {
			f, err := os.OpenFile(env.log, os.O_WRONLY, 0)
			require.NoError(t, err)
			require.NoError(t, f.Truncate(0))
			require.NoError(t, f.Close())
			appendFile(t, env.log, leaseLines(1000, 1150))
			return 150
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTailEnv(t)
			appendFile(t, env.log, leaseLines(0, 100))
			if tc.beforeStart != nil {
				tc.beforeStart(t, env)
			}
			first := env.exporter(t)
			stop := runExporter(t, first)
			waitLines(t, first, 100, 0)
			if tc.beforeStop != nil {
				tc.beforeStop(t, env, first)
			}
			stop()
			require.Equal(t, 100.0, metric(t, first, `cascade_gateway_log_lines_total{result="parsed"}`))

			want := tc.whileDown(t, env)
			second := env.exporter(t, func(c *Config) { c.FromBeginning = false })
			runExporter(t, second)
			waitLines(t, second, float64(want), 0)
			// Past the rotation grace nothing more may come: waiting is the test.
			time.Sleep(400 * time.Millisecond)
			require.Equal(t, float64(want), metric(t, second, `cascade_gateway_log_lines_total{result="parsed"}`))
			require.Equal(t, 0.0, metric(t, second, `cascade_gateway_log_lines_total{result="malformed"}`))
		})
	}
}

func TestMalformedLines(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, nil)
	e := env.exporter(t, func(c *Config) { c.MaxLineBytes = 4096 })
	runExporter(t, e)

	huge := bytes.Repeat([]byte("x"), 200<<10)
	var b bytes.Buffer
	b.WriteString(leaseLine(0))
	b.Write(huge) // far over the limit, in one write
	b.WriteByte('\n')
	b.WriteString(leaseLine(1))
	b.WriteString("{\"method\":\"GET\",\"uri\":\"/api/v1/pods\",\"status\":\"200\",\"user_agent\":\"\xff\xfe\"}\n") // invalid UTF-8
	b.WriteString("\n")                                                                                             // empty
	b.WriteString("garbage\r\n")
	b.WriteString(leaseLine(2))
	appendFile(t, env.log, b.Bytes())
	waitLines(t, e, 3, 4)

	// A long line arriving in pieces, slower than the poll: skipped without
	// being buffered, counted once, and the next line is read. The pace of
	// the writer is the test.
	for range 10 {
		appendFile(t, env.log, bytes.Repeat([]byte("y"), 1000))
		time.Sleep(15 * time.Millisecond)
	}
	appendFile(t, env.log, []byte("yyy\n"+leaseLine(3)))
	waitLines(t, e, 4, 5)

	// A line exactly at the limit is read.
	line := strings.TrimSuffix(leaseLine(4), "}\n")
	line += `,"pad":"` + strings.Repeat("p", 4096-len(line)-len(`,"pad":""}`)) + `"}`
	require.Len(t, line, 4096)
	appendFile(t, env.log, []byte(line+"\n"))
	waitLines(t, e, 5, 5)
	require.Equal(t, 5.0, metric(t, e, req(leaseRoute, "PUT", "200", "kubelet")))
}

func TestPartialLineWaits(t *testing.T) {
	env := newTailEnv(t)
	l := leaseLine(7)
	appendFile(t, env.log, []byte(l[:100]))
	e := env.exporter(t)
	runExporter(t, e)
	time.Sleep(200 * time.Millisecond) // twenty polls and more see no line: the test
	m := scrape(t, exporterCollector{e})
	require.Equal(t, 0.0, m[`cascade_gateway_log_lines_total{result="parsed"}`]+m[`cascade_gateway_log_lines_total{result="malformed"}`])
	appendFile(t, env.log, []byte(l[100:]))
	waitLines(t, e, 1, 0)
	waitFor(t, 5*time.Second, "the position past the line", func() bool {
		pf := savedPositions(t, env.positions)
		return len(pf.Files) == 1 && pf.Files[0].Offset == int64(len(l))
	})
}

func TestStartAtEndAndLogAppearing(t *testing.T) {
	env := newTailEnv(t)
	other := filepath.Join(env.dir, "later.log")
	appendFile(t, env.log, leaseLines(0, 50)) // before start, no position: skipped
	cfg := func(c *Config) {
		c.FromBeginning = false
		c.Logs = append(c.Logs, LogSpec{Format: FormatNginxJSON, Path: other})
	}
	e := env.exporter(t, cfg)
	runExporter(t, e)
	waitFor(t, 5*time.Second, "the exporter to start at the end of the log", func() bool {
		pf := savedPositions(t, env.positions)
		return len(pf.Files) == 1 && pf.Files[0].Offset == int64(len(leaseLines(0, 50)))
	})
	appendFile(t, env.log, leaseLines(50, 60))
	appendFile(t, other, leaseLines(0, 7)) // appears after start: read whole
	waitLines(t, e, 17, 0)
}

func TestPositionsFileErrors(t *testing.T) {
	env := newTailEnv(t)
	require.NoError(t, os.WriteFile(env.positions, []byte("{not json"), 0o644))
	e := env.exporter(t)
	err := e.Run(t.Context())
	require.ErrorContains(t, err, env.positions)

	require.NoError(t, os.WriteFile(env.positions, []byte(`{"version":7,"files":[]}`), 0o644))
	e = env.exporter(t)
	require.ErrorContains(t, e.Run(t.Context()), "version 7")
}

// TestUpdateDoesNotBlock scrapes while a large file is being read.
func TestUpdateDoesNotBlock(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 20000))
	e := env.exporter(t)
	runExporter(t, e)
	for range 20 {
		start := time.Now()
		scrape(t, exporterCollector{e})
		require.Less(t, time.Since(start), time.Second)
	}
	waitLines(t, e, 20000, 0)
}

func TestReadFileOneShot(t *testing.T) {
	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 10))
	appendFile(t, env.log, []byte("unterminated"))
	e := env.exporter(t)
	n, err := e.ReadFile(t.Context(), LogSpec{Format: FormatNginxJSON, Path: env.log})
	require.NoError(t, err)
	require.Equal(t, uint64(11), n)
	m := scrape(t, exporterCollector{e})
	require.Equal(t, 10.0, m[`cascade_gateway_log_lines_total{result="parsed"}`])
	require.Equal(t, 1.0, m[`cascade_gateway_log_lines_total{result="malformed"}`])
}
