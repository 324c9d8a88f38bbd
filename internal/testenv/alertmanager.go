package testenv

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Alertmanager is a real Alertmanager (Debian's) on loopback, clustering off
// unless it is a peer of an AlertmanagerCluster.
type Alertmanager struct {
	URL    string
	dir    string
	port   int
	config string
	proc   *Process
	// clusterArgs are the --cluster.* flags; none: clustering off.
	clusterArgs []string
}

// StartAlertmanager starts Alertmanager in dir with the given configuration.
func StartAlertmanager(dir, config string) (*Alertmanager, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	am := &Alertmanager{URL: "http://127.0.0.1:" + itoa(port), dir: dir, port: port, config: filepath.Join(dir, "alertmanager.yml")}
	if err := os.WriteFile(am.config, []byte(config), 0o644); err != nil {
		return nil, err
	}
	return am, am.Start()
}

// Start starts (or restarts) the Alertmanager on its port and data.
func (am *Alertmanager) Start() error {
	bin, err := ToolPath("prometheus-alertmanager")
	if err != nil {
		return err
	}
	cluster := am.clusterArgs
	if cluster == nil {
		// Clustering would listen on 0.0.0.0:9094; one instance needs none.
		cluster = []string{"--cluster.listen-address="}
	}
	am.proc, err = startProcess(am.dir, "alertmanager", bin, append([]string{
		"--config.file=" + am.config,
		"--storage.path=" + filepath.Join(am.dir, "data"),
		"--web.listen-address=127.0.0.1:" + itoa(am.port),
	}, cluster...)...)
	if err != nil {
		return err
	}
	if err := waitFor(am.proc, 30*time.Second, httpOK(http.DefaultClient, am.URL+"/-/ready", nil)); err != nil {
		am.proc.Kill()
		return fmt.Errorf("alertmanager: %w", err)
	}
	return nil
}

// Stop stops the Alertmanager; Start brings it back with its data.
func (am *Alertmanager) Stop() { am.proc.Stop() }

// AlertmanagerForTest starts an Alertmanager for t.
func AlertmanagerForTest(t testing.TB, config string) *Alertmanager {
	t.Helper()
	RequireLong(t)
	am, err := StartAlertmanager(t.TempDir(), config)
	if err != nil {
		t.Fatalf("start alertmanager: %v", err)
	}
	t.Cleanup(am.Stop)
	return am
}
