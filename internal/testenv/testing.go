package testenv

import (
	"os"
	"testing"
)

// ControlPlaneForTest starts a control plane for t and stops it when t ends.
// Tests that need it are skipped under -short only; a missing binary fails the
// test: `make test` installs every component.
func ControlPlaneForTest(t testing.TB) *ControlPlane {
	t.Helper()
	RequireLong(t)
	cp, err := StartControlPlane(t.TempDir())
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		cp.Stop()
		if t.Failed() {
			t.Logf("kube-apiserver log tail:\n%s", cp.apiserverLogTail())
		}
	})
	return cp
}

// NginxForTest starts nginx in front of upstream for t.
func NginxForTest(t testing.TB, upstream string, opts NginxOptions) *Nginx {
	t.Helper()
	RequireLong(t)
	n, err := StartNginx(t.TempDir(), upstream, opts)
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// RequireLong skips t under -short on a developer's machine: it needs real
// components. With CI set it always runs (make test installs them).
func RequireLong(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("needs real components; run without -short (make test installs them)")
	}
}

func (cp *ControlPlane) apiserverLogTail() string { return cp.apiserver.LogTail(3000) }

// PrometheusForTest starts Prometheus with config for t.
func PrometheusForTest(t testing.TB, config string) *Prometheus {
	t.Helper()
	RequireLong(t)
	p, err := StartPrometheus(t.TempDir(), config)
	if err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}
