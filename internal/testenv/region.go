package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// RegionCluster is one cluster of a provider's region, all real and
// watched the way production is: etcd and kube-apiserver, nginx as its API
// gateway, kubelets renewing their nodes' leases through the gateway,
// cgroup v2 files of the API server (its memory, limit and OOM kills), and
// a `cascade exporter` (the cascade binary given) reading all of it.
type RegionCluster struct {
	Name         string
	ControlPlane *ControlPlane
	Gateway      *Nginx
	CgroupDir    string
	// ExporterAddr is the host:port of the exporter's /metrics.
	ExporterAddr string

	stopKubelets context.CancelFunc
	kubelets     sync.WaitGroup
	exporter     *Process
}

// RegionClusterOptions size a RegionCluster.
type RegionClusterOptions struct {
	// Nodes is the fleet (default 20); its kubelets renew every
	// LeaseRenewal (default 5 s), so the gateway sees Nodes/LeaseRenewal
	// kubelet requests a second.
	Nodes        int
	LeaseRenewal time.Duration
}

// apiserverLimit is the memory limit in the API server's cgroup files:
// its working set (1.5 GiB) is well below.
const apiserverLimit = 4 << 30

// StartRegionCluster starts the cluster name in dir: its control plane and
// gateway, its nodes Ready with fresh leases, the kubelets, and the
// exporter, which it waits for.
func StartRegionCluster(dir, cascadeBin, name string, opts RegionClusterOptions) (c *RegionCluster, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 20
	}
	if opts.LeaseRenewal <= 0 {
		opts.LeaseRenewal = 5 * time.Second
	}
	c = &RegionCluster{Name: name, CgroupDir: filepath.Join(dir, "cgroup")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, sub := range []string{"control-plane", "gateway"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return c, err
		}
	}
	if c.ControlPlane, err = StartControlPlane(filepath.Join(dir, "control-plane")); err != nil {
		return c, err
	}
	if c.Gateway, err = StartNginx(filepath.Join(dir, "gateway"), c.ControlPlane.URL, NginxOptions{}); err != nil {
		return c, err
	}
	if err := writeAPIServerCgroup(c.CgroupDir); err != nil {
		return c, err
	}
	if err := c.seedNodes(opts.Nodes); err != nil {
		return c, err
	}
	kubelets, err := kubernetes.NewForConfig(&rest.Config{
		Host: c.Gateway.URL, BearerToken: c.ControlPlane.Token, QPS: -1,
		UserAgent: "kubelet/v1.37.2 (linux/amd64) kubernetes/cascade",
	})
	if err != nil {
		return c, err
	}
	ctx, stop := context.WithCancel(context.Background())
	c.stopKubelets = stop
	c.kubelets.Go(func() { c.renewLeases(ctx, kubelets, opts.Nodes, opts.LeaseRenewal) })

	kubeconfig, token := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "token")
	if err := c.ControlPlane.WriteKubeconfig(kubeconfig); err != nil {
		return c, err
	}
	if err := os.WriteFile(token, []byte(c.ControlPlane.Token), 0o600); err != nil {
		return c, err
	}
	port, err := FreePort()
	if err != nil {
		return c, err
	}
	c.ExporterAddr = "127.0.0.1:" + itoa(port)
	c.exporter, err = startProcess(dir, "cascade-exporter", cascadeBin, "exporter",
		"--web.listen-address="+c.ExporterAddr,
		"--kubeconfig="+kubeconfig,
		"--apimemory.endpoint=apiserver="+c.ControlPlane.URL+"/metrics",
		"--apimemory.bearer-token-file="+token,
		"--apimemory.insecure-skip-tls-verify",
		"--apimemory.cgroup=apiserver="+c.CgroupDir,
		"--no-apimemory.pods",
		"--exporter.gateway",
		"--gateway.log=nginx-json:"+c.Gateway.AccessLog,
	)
	if err != nil {
		return c, err
	}
	if err := waitFor(c.exporter, 30*time.Second, httpOK(http.DefaultClient, "http://"+c.ExporterAddr+"/metrics", nil)); err != nil {
		return c, fmt.Errorf("cascade exporter of %s: %w", name, err)
	}
	return c, nil
}

// nodeName is the name of the cluster's node i.
func (c *RegionCluster) nodeName(i int) string { return fmt.Sprintf("%s-node-%02d", c.Name, i) }

// seedNodes creates the Ready nodes and their fresh leases.
func (c *RegionCluster) seedNodes(n int) error {
	admin, err := c.ControlPlane.Clientset()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The API server creates kube-node-lease itself, soon after it starts.
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-node-lease"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	forty := int32(40)
	for i := range n {
		name := c.nodeName(i)
		node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if _, err := admin.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &forty, RenewTime: &metav1.MicroTime{Time: time.Now()}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// renewLeases is the kubelets: every period each renews its node's lease
// through the gateway, as a kubelet does (an update of the lease it holds),
// until ctx ends. A failed renewal is retried the next period.
func (c *RegionCluster) renewLeases(ctx context.Context, kubelets kubernetes.Interface, n int, period time.Duration) {
	leases := kubelets.CoordinationV1().Leases("kube-node-lease")
	held := map[string]*coordinationv1.Lease{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
		for i := range n {
			name := c.nodeName(i)
			l := held[name]
			if l == nil {
				got, err := leases.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					continue
				}
				l = got
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
			if err != nil {
				delete(held, name)
				continue
			}
			held[name] = updated
		}
	}
}

// writeAPIServerCgroup writes a cgroup v2 memory controller directory as
// the kernel presents it: 1.5 GiB in use, the limit, no OOM kill yet.
func writeAPIServerCgroup(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"memory.current": "1610612736\n",
		"memory.max":     fmt.Sprintf("%d\n", apiserverLimit),
		"memory.events":  "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"memory.stat":    "anon 1342177280\nfile 268435456\nkernel 16777216\nshmem 0\ninactive_anon 1342177280\nactive_anon 0\ninactive_file 134217728\nactive_file 134217728\nunevictable 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// OOMKill does what the kernel's OOM killer does to the cluster's API
// server: one more oom_kill (and oom) in its cgroup's memory.events, and
// the process killed with SIGKILL.
func (c *RegionCluster) OOMKill() error {
	events := filepath.Join(c.CgroupDir, "memory.events")
	b, err := os.ReadFile(events)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i, l := range lines {
		key, v, ok := strings.Cut(l, " ")
		if !ok || (key != "oom" && key != "oom_kill") {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: %q: %w", events, l, err)
		}
		lines[i] = key + " " + strconv.Itoa(n+1)
	}
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	c.ControlPlane.KillAPIServer()
	return nil
}

// Stop stops the exporter, the kubelets, the gateway and the control plane.
func (c *RegionCluster) Stop() {
	if c.exporter != nil {
		c.exporter.Stop()
	}
	if c.stopKubelets != nil {
		c.stopKubelets()
		c.kubelets.Wait()
	}
	if c.Gateway != nil {
		c.Gateway.Stop()
	}
	if c.ControlPlane != nil {
		c.ControlPlane.Stop()
	}
}

// ExporterLogTail is the end of the exporter's log, for failure messages.
func (c *RegionCluster) ExporterLogTail(n int) string {
	if c.exporter == nil {
		return ""
	}
	return c.exporter.LogTail(n)
}

// RegionClusterForTest starts a RegionCluster for t and stops it when t ends.
func RegionClusterForTest(t testing.TB, cascadeBin, name string, opts RegionClusterOptions) *RegionCluster {
	t.Helper()
	RequireLong(t)
	c, err := StartRegionCluster(t.TempDir(), cascadeBin, name, opts)
	if err != nil {
		t.Fatalf("start cluster %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("cascade exporter of %s log tail:\n%s", name, c.ExporterLogTail(3000))
		}
	})
	return c
}
