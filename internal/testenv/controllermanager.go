package testenv

import (
	"fmt"
	"path/filepath"
	"time"
)

// ControllerManager is a real kube-controller-manager on loopback, running
// the controllers it is given (by default the node lifecycle controller,
// which marks nodes whose leases stop NotReady and taints them
// unreachable).
type ControllerManager struct {
	URL  string // https://127.0.0.1:PORT, serving /healthz
	proc *Process
}

// ControllerManagerConfig says what to run and against which API server.
type ControllerManagerConfig struct {
	// Dir holds its serving certificates and log.
	Dir string
	// Kubeconfig is the API server and credentials it uses.
	Kubeconfig string
	// Controllers are passed to --controllers; empty: the node lifecycle
	// controller alone.
	Controllers string
	// Args are added to the flags above.
	Args []string
	// Name names its process and log file; empty: kube-controller-manager.
	Name string
}

// StartControllerManager starts kube-controller-manager and waits up to a
// minute for its /healthz. Leader election is off: one instance runs.
func StartControllerManager(cfg ControllerManagerConfig) (*ControllerManager, error) {
	bin, err := ToolPath("kube-controller-manager")
	if err != nil {
		return nil, err
	}
	if cfg.Controllers == "" {
		cfg.Controllers = "node-lifecycle-controller"
	}
	if cfg.Name == "" {
		cfg.Name = "kube-controller-manager"
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &ControllerManager{URL: "https://127.0.0.1:" + itoa(port)}
	m.proc, err = startProcess(cfg.Dir, cfg.Name, bin, append([]string{
		"--kubeconfig=" + cfg.Kubeconfig,
		"--controllers=" + cfg.Controllers,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + itoa(port),
		"--cert-dir=" + filepath.Join(cfg.Dir, "kcm-certs"),
		"--v=1",
	}, cfg.Args...)...)
	if err != nil {
		return nil, err
	}
	if err := waitFor(m.proc, time.Minute, httpOK(insecureClient(), m.URL+"/healthz", nil)); err != nil {
		m.proc.Kill()
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	return m, nil
}

// Pid is the controller manager's process id.
func (m *ControllerManager) Pid() int { return m.proc.Pid() }

// LogTail is the end of its log, for error messages.
func (m *ControllerManager) LogTail(n int) string { return m.proc.LogTail(n) }

// Stop stops it.
func (m *ControllerManager) Stop() { m.proc.Stop() }
