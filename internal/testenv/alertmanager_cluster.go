package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// AlertmanagerCluster is real Alertmanagers (Debian's) in one HA cluster on
// loopback: each gossips its silences and notification log to the others
// on 127.0.0.1 (never 0.0.0.0:9094, Alertmanager's default), so an alert
// sent to all of them is notified once. A peer can be killed and started
// again on the same ports and data.
type AlertmanagerCluster struct {
	Peers []*Alertmanager
}

// PeerTimeout is the clusters' --cluster.peer-timeout: how long the peer at
// position i waits (i times this) for the peers before it to notify before
// notifying itself. Alertmanager's default is 15 s; tests take less.
const PeerTimeout = 5 * time.Second

// StartAlertmanagerCluster starts n clustered Alertmanagers in
// subdirectories of dir with the same configuration and waits until each
// sees all n members.
func StartAlertmanagerCluster(dir, config string, n int) (*AlertmanagerCluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &AlertmanagerCluster{}
	for i := range n {
		am := &Alertmanager{
			URL:  "http://127.0.0.1:" + itoa(ports[2*i]),
			dir:  filepath.Join(dir, fmt.Sprintf("alertmanager-%d", i)),
			port: ports[2*i],
		}
		gossip := "127.0.0.1:" + itoa(ports[2*i+1])
		am.clusterArgs = []string{
			"--cluster.listen-address=" + gossip,
			"--cluster.advertise-address=" + gossip,
			"--cluster.peer-timeout=" + PeerTimeout.String(),
			// Alertmanager waits this long for the peers to settle before
			// it notifies; they are all on loopback.
			"--cluster.settle-timeout=10s",
		}
		for j := range n {
			if j != i {
				am.clusterArgs = append(am.clusterArgs, "--cluster.peer=127.0.0.1:"+itoa(ports[2*j+1]))
			}
		}
		if err := os.MkdirAll(am.dir, 0o755); err != nil {
			return nil, err
		}
		am.config = filepath.Join(am.dir, "alertmanager.yml")
		if err := os.WriteFile(am.config, []byte(config), 0o644); err != nil {
			return nil, err
		}
		c.Peers = append(c.Peers, am)
	}
	for _, am := range c.Peers {
		if err := am.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitClustered(60 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// URLs are the peers' base URLs: send every alert to all of them.
func (c *AlertmanagerCluster) URLs() []string {
	var out []string
	for _, am := range c.Peers {
		out = append(out, am.URL)
	}
	return out
}

// WaitClustered waits until every running peer reports the cluster ready
// with every peer a member.
func (c *AlertmanagerCluster) WaitClustered(timeout time.Duration) error {
	for _, am := range c.Peers {
		err := waitFor(am.proc, timeout, func(ctx context.Context) error {
			st, err := am.ClusterStatus(ctx)
			if err != nil {
				return err
			}
			if st.Status != "ready" || len(st.Peers) != len(c.Peers) {
				return fmt.Errorf("alertmanager %s: cluster %s with %d of %d peers", am.URL, st.Status, len(st.Peers), len(c.Peers))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every peer.
func (c *AlertmanagerCluster) Stop() {
	for _, am := range c.Peers {
		if am.proc != nil {
			am.Stop()
		}
	}
}

// ClusterStatus is the cluster part of Alertmanager's /api/v2/status.
type ClusterStatus struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ready, settling, disabled
	Peers  []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
	} `json:"peers"`
}

// ClusterStatus asks the Alertmanager how it sees its cluster.
func (am *Alertmanager) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var out struct {
		Cluster ClusterStatus `json:"cluster"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, am.URL+"/api/v2/status", nil)
	if err != nil {
		return out.Cluster, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out.Cluster, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out.Cluster, fmt.Errorf("alertmanager %s: status: %s", am.URL, resp.Status)
	}
	return out.Cluster, json.NewDecoder(resp.Body).Decode(&out)
}

// Kill kills the Alertmanager with SIGKILL, as a crash would: it keeps no
// snapshot of its state, and gets it back from its peers when started again.
func (am *Alertmanager) Kill() { am.proc.Kill() }

// AlertmanagerClusterForTest starts n clustered Alertmanagers for t.
func AlertmanagerClusterForTest(t testing.TB, config string, n int) *AlertmanagerCluster {
	t.Helper()
	RequireLong(t)
	c, err := StartAlertmanagerCluster(t.TempDir(), config, n)
	if err != nil {
		t.Fatalf("start alertmanager cluster: %v", err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, am := range c.Peers {
				t.Logf("alertmanager %s log tail:\n%s", am.URL, am.proc.LogTail(2000))
			}
		}
	})
	return c
}
