package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ThanosReceiveReplicaLabel is the external label naming a Receive replica;
// Thanos Query deduplicates along it.
const ThanosReceiveReplicaLabel = "receive_replica"

// ThanosReceive is a ring of real Thanos Receive replicas on loopback behind
// one hashring, each sample replicated to ReplicationFactor of them. A
// remote write to any replica is forwarded along the ring.
type ThanosReceive struct {
	Replicas          []*ThanosReceiver
	ReplicationFactor int
}

// ThanosReceiver is one replica of the ring.
type ThanosReceiver struct {
	Name           string
	URL            string // http://127.0.0.1:PORT, its HTTP API
	RemoteWriteURL string // http://127.0.0.1:PORT/api/v1/receive
	GRPCAddress    string // 127.0.0.1:PORT, its Store API

	dir  string
	proc *Process
}

// StartThanosReceive starts replicas Thanos Receive processes in
// subdirectories of dir sharing one hashring with the given replication
// factor, and waits until each is ready. Every listener is on 127.0.0.1:
// Thanos's defaults are 0.0.0.0.
func StartThanosReceive(dir string, replicas, replicationFactor int) (*ThanosReceive, error) {
	if replicas < 1 || replicationFactor < 1 || replicationFactor > replicas {
		return nil, fmt.Errorf("thanos receive: %d replicas with replication factor %d", replicas, replicationFactor)
	}
	bin, err := ToolPath("thanos")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(4 * replicas)
	if err != nil {
		return nil, err
	}
	ring := &ThanosReceive{ReplicationFactor: replicationFactor}
	var endpoints []string
	var argsOf [][]string
	for i := range replicas {
		p := ports[4*i:]
		r := &ThanosReceiver{
			Name:           fmt.Sprintf("receive-%d", i),
			URL:            "http://127.0.0.1:" + itoa(p[0]),
			GRPCAddress:    "127.0.0.1:" + itoa(p[1]),
			RemoteWriteURL: "http://127.0.0.1:" + itoa(p[2]) + "/api/v1/receive",
		}
		r.dir = filepath.Join(dir, r.Name)
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			return nil, err
		}
		args := []string{"receive",
			"--http-address=127.0.0.1:" + itoa(p[0]),
			"--grpc-address=" + r.GRPCAddress,
			"--remote-write.address=127.0.0.1:" + itoa(p[2]),
			// Listened on even with the gRPC replication protocol.
			"--receive.capnproto-address=127.0.0.1:" + itoa(p[3]),
			"--tsdb.path=" + filepath.Join(r.dir, "data"),
			fmt.Sprintf("--label=%s=%q", ThanosReceiveReplicaLabel, r.Name),
			"--receive.local-endpoint=" + r.GRPCAddress,
			"--receive.hashrings-file=" + filepath.Join(dir, "hashring.json"),
			"--receive.replication-factor=" + itoa(replicationFactor),
			"--log.level=warn",
		}
		endpoints = append(endpoints, r.GRPCAddress)
		ring.Replicas = append(ring.Replicas, r)
		argsOf = append(argsOf, args)
	}
	hashring, err := json.Marshal([]map[string]any{{"hashring": "default", "endpoints": endpoints}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "hashring.json"), hashring, 0o644); err != nil {
		return nil, err
	}
	for i, r := range ring.Replicas {
		if r.proc, err = startProcess(r.dir, "thanos-receive", bin, argsOf[i]...); err != nil {
			ring.Stop()
			return nil, err
		}
	}
	for i, r := range ring.Replicas {
		ready := httpOK(http.DefaultClient, r.URL+"/-/ready", nil)
		err := waitFor(r.proc, 60*time.Second, ready)
		if err != nil && r.proc.Exited() && strings.Contains(r.proc.LogTail(8000), pruneRacePanic) {
			// Thanos before thanos-io/thanos#8990 (after v0.42.5) may prune
			// a tenant whose TSDB is still opening and crash on start: a
			// race of its own, which a second start does not meet again.
			if r.proc, err = startProcess(r.dir, "thanos-receive", bin, argsOf[i]...); err == nil {
				err = waitFor(r.proc, 60*time.Second, ready)
			}
		}
		if err != nil {
			ring.Stop()
			return nil, fmt.Errorf("thanos receive %s: %w", r.Name, err)
		}
	}
	return ring, nil
}

// pruneRacePanic is in the stack of Thanos receive's crash on start when it
// prunes a tenant whose TSDB is still opening.
const pruneRacePanic = "shouldBeMarkedInactive"

// RemoteWriteURL is where to remote-write: the first replica, which
// forwards along the ring.
func (ring *ThanosReceive) RemoteWriteURL() string { return ring.Replicas[0].RemoteWriteURL }

// GRPCAddresses are the replicas' Store API addresses, for Thanos Query.
func (ring *ThanosReceive) GRPCAddresses() []string {
	var out []string
	for _, r := range ring.Replicas {
		out = append(out, r.GRPCAddress)
	}
	return out
}

// Stop stops every replica.
func (ring *ThanosReceive) Stop() {
	for _, r := range ring.Replicas {
		r.Stop()
	}
}

// Stop stops the replica by its pid.
func (r *ThanosReceiver) Stop() {
	if r.proc != nil {
		r.proc.Stop()
	}
}

// ThanosReceiveForTest starts a Receive ring for t and stops it when t ends.
func ThanosReceiveForTest(t testing.TB, replicas, replicationFactor int) *ThanosReceive {
	t.Helper()
	RequireLong(t)
	ring, err := StartThanosReceive(t.TempDir(), replicas, replicationFactor)
	if err != nil {
		t.Fatalf("start thanos receive: %v", err)
	}
	t.Cleanup(func() {
		ring.Stop()
		if t.Failed() {
			for _, r := range ring.Replicas {
				t.Logf("%s log tail:\n%s", r.Name, r.proc.LogTail(2000))
			}
		}
	})
	return ring
}
