// Package testenv starts the real components Cascade talks to (etcd,
// kube-apiserver, nginx, Prometheus) as plain processes on 127.0.0.1 with their
// data in a temporary directory, for tests and benchmarks. Every process is
// stopped by the pid it was started with, never by name.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one running component started by this package.
type Process struct {
	Name    string
	LogPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess runs bin with args, its stdout and stderr appended to a log
// file in dir. The process gets its own process group so that its children
// die with it.
func startProcess(dir, name, bin string, args ...string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id this package started.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signaled reports whether the process ended by a signal, and which: an
// OOM kill is SIGKILL. ok is false while it runs or if it exited itself.
func (p *Process) Signaled() (sig syscall.Signal, ok bool) {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return 0, false
	}
	ws, isWait := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !isWait || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Process) Kill() { p.signalAndWait(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM, waits up to 10 s, then kills.
func (p *Process) Stop() {
	if !p.signalAndWait(syscall.SIGTERM, 10*time.Second) {
		p.Kill()
	}
}

func (p *Process) signalAndWait(sig syscall.Signal, wait time.Duration) bool {
	if p.Exited() {
		return true
	}
	// Negative pid: the whole process group this package created.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// LogTail returns the last n bytes of the process log, for error messages.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// Hold every listener until all ports are picked so none is picked twice.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor polls check until it returns nil, the process exits, or timeout.
func waitFor(p *Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited while starting: %v\n%s", p.Name, last, p.LogTail(4000))
		}
		select {
		case <-ctx.Done():
			tail := ""
			if p != nil {
				tail = p.LogTail(4000)
			}
			return fmt.Errorf("not ready after %s: %w\n%s", timeout, last, tail)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpOK(client *http.Client, url string, header http.Header) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(url + ": " + resp.Status)
		}
		return nil
	}
}

// RepoRoot walks up from the working directory to the folder holding the
// project's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/cascade-sre/cascade\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the cascade repository root above the working directory")
		}
		dir = parent
	}
}

// ToolPath finds a binary: $CASCADE_<NAME> if set, then the repository's
// .tools/bin (where `make deps` builds kube-apiserver), then PATH.
func ToolPath(name string) (string, error) {
	env := "CASCADE_" + envName(name)
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in .tools/bin or PATH (set %s, or run `make deps`)", name, env)
}

func envName(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '-':
			b[i] = '_'
		}
	}
	return string(b)
}

func itoa(i int) string { return strconv.Itoa(i) }

var sigUSR1 = syscall.SIGUSR1

// StartProcess starts a program of the project's own (the cascade binary,
// a benchmark's helper) the same way as the components: own process group,
// output in dir/name.log.
func StartProcess(dir, name, bin string, args ...string) (*Process, error) {
	return startProcess(dir, name, bin, args...)
}

// BuildCascade builds the cascade binary into dir and returns its path.
func BuildCascade(dir string) (string, error) { return buildCascade(dir, "cascade") }

// BuildCascadeExporter builds cascade-exporter, the slim binary of the
// image's exporter Deployment (`cascade exporter` alone: ./cmd/cascade with
// the build tag cascade_exporter, as the Makefile builds it), into dir and
// returns its path.
func BuildCascadeExporter(dir string) (string, error) {
	return buildCascade(dir, "cascade-exporter", "-tags", "cascade_exporter")
}

func buildCascade(dir, name string, flags ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	args := append(append([]string{"build"}, flags...), "-o", out, "./cmd/cascade")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// GoPromtool runs promtool at the engine's Prometheus version: the tool
// pinned in go.mod, through `go tool`. The first run builds it (minutes on a
// small machine); later runs come from the build cache.
func GoPromtool(args ...string) ([]byte, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go command not found: %w", err)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(gobin, append([]string{"tool", "promtool"}, args...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("promtool %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
