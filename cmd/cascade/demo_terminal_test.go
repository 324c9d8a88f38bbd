package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestDemoOnATerminal plays the demo in a real terminal (a tmux pane of 120
// by 40) and reads the screen back: no line holds both the progress bar and
// an event (an event clears the bar and the bar is drawn again below it),
// and no line of the live part is wider than the pane.
func TestDemoOnATerminal(t *testing.T) {
	testenv.RequireLong(t)
	bin := cascadeBinary(t)
	tmux, err := exec.LookPath("tmux")
	require.NoError(t, err, "tmux is one of the project's test tools")
	dir := t.TempDir()
	// An own server (socket in dir): nothing of anyone else's tmux is touched.
	socket := filepath.Join(dir, "tmux.sock")
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", socket}, args...)...).CombinedOutput()
		require.NoError(t, err, "tmux %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	demo := fmt.Sprintf("%s demo --nodes 40 --speed 3000 --output.dir %s; echo DEMO-EXIT=$?; sleep 600",
		bin, filepath.Join(dir, "out"))
	run("new-session", "-d", "-x", "120", "-y", "40", "-s", "demo", demo)
	serverPid, err := strconv.Atoi(strings.TrimSpace(run("display-message", "-p", "-t", "demo", "#{pid}")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(serverPid, syscall.SIGTERM) })
	run("set-option", "-t", "demo", "history-limit", "10000")

	// The whole screen and its history, wrapped lines joined.
	screen := func() string { return run("capture-pane", "-p", "-J", "-S", "-", "-t", "demo") }
	require.Eventually(t, func() bool { return strings.Contains(screen(), "DEMO-EXIT=") }, 3*time.Minute, 200*time.Millisecond)
	out := screen()
	require.Contains(t, out, "DEMO-EXIT=0", out)

	progress := regexp.MustCompile(`\[[#.]{30}\]`)
	event := regexp.MustCompile(`\d\d:\d\d:\d\d  (injected|INCIDENT|alert) `)
	live, _, _ := strings.Cut(out, "\n# ") // the report's first heading
	var events int
	for _, line := range strings.Split(live, "\n") {
		if event.MatchString(line) {
			events++
		}
		require.False(t, progress.MatchString(line) && event.MatchString(line), "progress bar and event on one line:\n%q", line)
		require.LessOrEqual(t, utf8.RuneCountInString(line), 120, "a line wider than the pane:\n%q", line)
	}
	require.Greater(t, events, 5, "the demo printed no events:\n%s", out)
	require.Regexp(t, progress, live, "the progress bar never showed:\n%s", out)
}
