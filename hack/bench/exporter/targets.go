package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sre/cascade/internal/testenv"
)

const (
	targetCascade = "cascade"
	// targetCascadeGzip is the same exporter with --web.enable-gzip: it
	// compresses its text when the scraper accepts gzip, as Prometheus
	// does, as kube-state-metrics-gzip does.
	targetCascadeGzip = "cascade-gzip"
	targetCompare     = "cascade-compare"
	targetFloor       = "floor"
	targetStatic      = "static"
	targetPeer        = "kube-state-metrics"
	// targetPeerGzip is kube-state-metrics with --enable-gzip-encoding:
	// by default it sends its text uncompressed, whatever the scraper
	// accepts, as cascade does. This one does cascade-gzip's work.
	targetPeerGzip = "kube-state-metrics-gzip"
)

// targetSpec says how to start one scrape target and when it is ready.
type targetSpec struct {
	name  string
	bin   string // empty: not available, skipped
	args  []string
	url   string
	ready func(body []byte) error // nil when the target serves the whole fleet
}

// targetSpecs lists the targets in the order they are measured.
func targetSpecs(o options, kubeconfig string, n int) []targetSpec {
	self, err := os.Executable()
	if err != nil {
		self = "" // cannot happen on Linux; the floor is then skipped
	}
	cascadeAddr, cascadeGzipAddr, compareAddr := loopbackAddr(), loopbackAddr(), loopbackAddr()
	floorAddr, staticAddr := loopbackAddr(), loopbackAddr()
	ksmAddr, ksmTelemetry, ksmGzipAddr, ksmGzipTelemetry := freePort(), freePort(), freePort(), freePort()
	ksmArgs := func(port, telemetry string) []string {
		return []string{"--resources=leases", "--kubeconfig=" + kubeconfig,
			"--host=127.0.0.1", "--port=" + port,
			"--telemetry-host=127.0.0.1", "--telemetry-port=" + telemetry}
	}
	cascadeArgs := func(addr string) []string {
		return []string{"exporter", "--kubeconfig=" + kubeconfig, "--no-exporter.apimemory",
			"--web.listen-address=" + addr}
	}
	specs := []targetSpec{{
		name:  targetCascade,
		bin:   o.cascade,
		args:  cascadeArgs(cascadeAddr),
		url:   "http://" + cascadeAddr + "/metrics",
		ready: cascadeReady(n),
	}}
	if o.pprofDir != "" {
		specs[0].args = append(specs[0].args, "--web.enable-pprof")
	}
	specs = append(specs, targetSpec{
		name:  targetCascadeGzip,
		bin:   o.cascade,
		args:  append(cascadeArgs(cascadeGzipAddr), "--web.enable-gzip"),
		url:   "http://" + cascadeGzipAddr + "/metrics",
		ready: cascadeReady(n),
	})
	if o.compare != "" {
		specs = append(specs, targetSpec{
			name:  targetCompare,
			bin:   o.compare,
			args:  cascadeArgs(compareAddr),
			url:   "http://" + compareAddr + "/metrics",
			ready: cascadeReady(n),
		})
	}
	return append(specs, []targetSpec{
		{
			name:  targetFloor,
			bin:   self,
			args:  []string{"-floor-nodes=" + strconv.Itoa(n), "-listen=" + floorAddr},
			url:   "http://" + floorAddr + "/metrics",
			ready: func([]byte) error { return nil },
		},
		{
			name:  targetStatic,
			bin:   self,
			args:  []string{"-static", "-listen=" + staticAddr},
			url:   "http://" + staticAddr + "/metrics",
			ready: func([]byte) error { return nil },
		},
		{
			name:  targetPeer,
			bin:   o.ksm,
			args:  ksmArgs(ksmAddr, ksmTelemetry),
			url:   "http://127.0.0.1:" + ksmAddr + "/metrics",
			ready: ksmReady(n),
		},
		{
			name:  targetPeerGzip,
			bin:   o.ksm,
			args:  append(ksmArgs(ksmGzipAddr, ksmGzipTelemetry), "--enable-gzip-encoding"),
			url:   "http://127.0.0.1:" + ksmGzipAddr + "/metrics",
			ready: ksmReady(n),
		},
	}...)
}

// cascadeReady: the lease watch is up and every lease and every node is
// counted. Nodes too: the node watch syncs on its own, and its initial load
// (N large objects) must not fall into the measurement window.
func cascadeReady(n int) func([]byte) error {
	return func(body []byte) error {
		up, leases, nodes := -1.0, 0.0, 0.0
		for s := range samples(body) {
			switch s.name {
			case "cascade_node_lease_watch_up":
				up = s.value
			case "cascade_node_leases":
				leases += s.value
			case "cascade_nodes":
				nodes += s.value
			}
		}
		if up != 1 || int(leases) != n || int(nodes) != n {
			return fmt.Errorf("cascade_node_lease_watch_up=%v, sum(cascade_node_leases)=%v, sum(cascade_nodes)=%v, want 1, %d and %d",
				up, leases, nodes, n, n)
		}
		return nil
	}
}

// ksmReady: every node lease has its renew time exported.
func ksmReady(n int) func([]byte) error {
	return func(body []byte) error {
		got := 0
		for s := range samples(body) {
			if s.name == "kube_lease_renew_time" && strings.Contains(s.labels, `namespace="kube-node-lease"`) {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d kube_lease_renew_time series in kube-node-lease, want %d", got, n)
		}
		return nil
	}
}

// waitReady scrapes until ready accepts the body, the child exits, or timeout.
func waitReady(ctx context.Context, c *child, s *scraper, ready func([]byte) error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		r, err := s.scrape(ctx)
		if err == nil {
			err = ready(r.body)
		}
		if err == nil {
			return nil
		}
		last = err
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case c.exited():
			return fmt.Errorf("exited before it was ready (%v); its log ends:\n%s", last, c.logTail(3000))
		case time.Now().After(deadline):
			return fmt.Errorf("not ready after %s: %v; its log ends:\n%s", timeout, last, c.logTail(3000))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// child is a process the bench started. It gets its own process group (so a
// Ctrl-C on the terminal reaches only the bench, which then stops it in
// order) and dies with the bench if the bench is killed outright.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func startChild(dir, name, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the child to end (SIGTERM to its pid), then kills it after 10 s.
func (c *child) stop() {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		progress("%s (pid %d) ignored SIGTERM for 10 s; killing it", c.name, c.pid())
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func freePort() string {
	p, err := testenv.FreePort()
	if err != nil {
		panic(errors.Join(errors.New("no free port on 127.0.0.1"), err))
	}
	return strconv.Itoa(p)
}

func loopbackAddr() string { return "127.0.0.1:" + freePort() }
