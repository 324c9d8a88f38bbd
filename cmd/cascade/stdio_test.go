package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/scenario"
)

// TestJoinDashValues: a lone "-" is joined to the value flag before it, and
// nothing else changes.
func TestJoinDashValues(t *testing.T) {
	model := newCLI().app.Model()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"backtest", "--data", "-"}, []string{"backtest", "--data=-"}},
		{[]string{"backtest", "--data=-"}, []string{"backtest", "--data=-"}},
		{[]string{"scenario", "incident", "-o", "-", "--truth", "-"}, []string{"scenario", "incident", "-o-", "--truth=-"}},
		{[]string{"report", "--events", "-", "--output", "-"}, []string{"report", "--events=-", "--output=-"}},
		// Not the value of a flag: left as it is.
		{[]string{"scenario", "--list", "-"}, []string{"scenario", "--list", "-"}},
		{[]string{"rules", "check", "-"}, []string{"rules", "check", "-"}},
		{[]string{"backtest", "--", "--data", "-"}, []string{"backtest", "--", "--data", "-"}},
	} {
		require.Equal(t, tc.want, joinDashValues(model, tc.in), "%q", tc.in)
	}
}

// runCascade runs the cascade binary in dir with stdin and returns its exit
// code, stdout and stderr.
func runCascade(t *testing.T, dir string, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(cascadeBinary(t), args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, out.String(), errOut.String()
}

// TestDashReadsAndWritesStandardStreams runs the documented pipelines with
// the real binary: "-" is standard input for --data, --events and report's
// --truth, and standard output for scenario's -o and --truth and report's
// -o, written as "--flag -" or "--flag=-".
func TestDashReadsAndWritesStandardStreams(t *testing.T) {
	dir := t.TempDir()
	bin := cascadeBinary(t)

	// scenario | backtest, through a pipe between the two processes.
	scen := exec.Command(bin, "scenario", "incident", "--nodes", "20", "-o", "-")
	scen.Dir = dir
	data, err := scen.StdoutPipe()
	require.NoError(t, err)
	var scenErr bytes.Buffer
	scen.Stderr = &scenErr
	bt := exec.Command(bin, "backtest", "--data", "-", "--format", "json")
	bt.Stdin = data
	bt.Dir = dir
	var events, btErr bytes.Buffer
	bt.Stdout, bt.Stderr = &events, &btErr
	require.NoError(t, scen.Start())
	require.NoError(t, bt.Start())
	require.NoError(t, bt.Wait(), "%s", btErr.String())
	require.NoError(t, scen.Wait(), "%s", scenErr.String())
	require.Contains(t, events.String(), `"kind":"incident"`)
	require.Contains(t, btErr.String(), "ControlPlaneCascadeIncident=1")

	// The other form of the flag, from a file on standard input.
	om := filepath.Join(dir, "incident.om")
	truthFile := filepath.Join(dir, "truth.json")
	code, truthOut, stderr := runCascade(t, dir, nil, "scenario", "incident", "--nodes", "20", "-o", om, "--truth", "-")
	require.Equal(t, 0, code, stderr)
	var truth scenario.Truth
	require.NoError(t, json.Unmarshal([]byte(truthOut), &truth), "--truth - writes the truth to standard output")
	require.Equal(t, "apiserver_oom", truth.RootCause)
	require.NoError(t, os.WriteFile(truthFile, []byte(truthOut), 0o644))
	omData, err := os.ReadFile(om)
	require.NoError(t, err)
	code, again, stderr := runCascade(t, dir, omData, "backtest", "--data=-", "--format", "json")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, events.String(), again)

	// backtest | report: events on standard input, the report on standard
	// output, the truth from a file; then the truth on standard input.
	for _, args := range [][]string{
		{"report", "--events", "-", "--truth", truthFile, "-o", "-"},
		{"report", "--events=-", "--truth", truthFile},
	} {
		code, md, stderr := runCascade(t, dir, events.Bytes(), args...)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, md, "# Incident cluster:demo@", "%q", args)
		require.Contains(t, md, "injected: first_oom")
	}
	eventsFile := filepath.Join(dir, "events.jsonl")
	require.NoError(t, os.WriteFile(eventsFile, events.Bytes(), 0o644))
	code, md, stderr := runCascade(t, dir, []byte(truthOut), "report", "--events", eventsFile, "--truth", "-")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, md, "injected: first_oom")

	// Two things cannot share one stream.
	code, _, stderr = runCascade(t, dir, nil, "scenario", "incident", "--nodes", "20", "--truth", "-")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--truth - and the data would both go to standard output")
	code, _, stderr = runCascade(t, dir, events.Bytes(), "report", "--events", "-", "--truth", "-")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "cannot both read standard input")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), "-") || strings.HasPrefix(e.Name(), "."), "a file named %q was left", e.Name())
	}
}

// TestOutputToAFIFO: scenario -o given a FIFO (the test's own) writes the
// data through it, gzipped when the name ends in .gz, and leaves the FIFO a
// FIFO, with no temporary file beside it: atomic replacement is for
// regular files only.
func TestOutputToAFIFO(t *testing.T) {
	for _, name := range []string{"data.om", "data.om.gz"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fifo := filepath.Join(dir, name)
			require.NoError(t, syscall.Mkfifo(fifo, 0o600))
			read := make(chan []byte, 1)
			go func() {
				f, err := os.Open(fifo) // waits for the writer
				if err != nil {
					read <- nil
					return
				}
				defer f.Close()
				b, _ := io.ReadAll(f)
				read <- b
			}()
			code, _, stderr := runCascade(t, dir, nil, "scenario", "incident", "--nodes", "5", "-o", fifo)
			var got []byte
			select {
			case got = <-read:
			case <-time.After(10 * time.Second): // cascade has ended: what it wrote is there
				// cascade never opened it: let the reader go, if the FIFO
				// is still there (if it was replaced, the reader waits on
				// the old one until the test binary ends).
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				fi, _ := os.Lstat(fifo)
				t.Fatalf("nothing was written to the FIFO (exit %d, now %v): %s", code, fi.Mode().Type(), stderr)
			}
			require.Equal(t, 0, code, stderr)
			if strings.HasSuffix(name, ".gz") {
				zr, err := gzip.NewReader(bytes.NewReader(got))
				require.NoError(t, err)
				got, err = io.ReadAll(zr)
				require.NoError(t, err)
			}
			require.True(t, strings.HasSuffix(string(got), "# EOF\n"), "the data did not come through whole")
			fi, err := os.Lstat(fifo)
			require.NoError(t, err)
			require.Equal(t, os.ModeNamedPipe, fi.Mode().Type(), "the FIFO was replaced")
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "something was left beside the FIFO")
		})
	}
}
