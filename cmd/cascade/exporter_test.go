package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestPrometheusScrapesExporter runs `cascade exporter` against a real API
// server and the access log of a real nginx in front of it, behind TLS and
// basic auth, and has a real Prometheus scrape it.
func TestPrometheusScrapesExporter(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	gw := testenv.NginxForTest(t, cp.URL, testenv.NginxOptions{})
	bin := cascadeBinary(t)
	dir := t.TempDir()
	seedCluster(t, cp)

	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(cp.Token), 0o600))
	cgroup := writeCgroupV2(t, filepath.Join(dir, "cgroup"), 2<<30)
	webConfig := writeWebConfig(t, dir, "prom", "s3cret")

	port, err := testenv.FreePort()
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	exp, err := testenv.StartProcess(dir, "cascade-exporter", bin, "exporter",
		"--web.listen-address="+addr,
		"--web.config.file="+webConfig,
		"--kubeconfig="+kubeconfig,
		"--apimemory.endpoint=a="+cp.URL+"/metrics",
		"--apimemory.bearer-token-file="+tokenFile,
		"--apimemory.insecure-skip-tls-verify",
		"--apimemory.cgroup=a="+cgroup,
		"--apimemory.pods",
		"--apimemory.poll-interval=1s",
		"--apimemory.timeout=900ms",
		"--exporter.gateway",
		"--gateway.log=nginx-json:"+gw.AccessLog,
		"--gateway.from-beginning",
	)
	require.NoError(t, err)
	t.Cleanup(func() {
		exp.Stop()
		if t.Failed() {
			t.Logf("exporter log:\n%s", exp.LogTail(4000))
		}
	})

	prom := testenv.PrometheusForTest(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cascade
    scheme: https
    tls_config: {insecure_skip_verify: true}
    basic_auth: {username: prom, password: s3cret}
    static_configs:
      - targets: [%q]
        labels: {cluster: test}
`, addr))

	ctx := t.Context()
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/v1/nodes/n1", nil)
		req.Header.Set("Authorization", "Bearer "+cp.Token)
		req.Header.Set("User-Agent", "kubelet/v1.37.2 (linux/amd64) kubernetes/abc")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	require.Eventually(t, func() bool {
		if exp.Exited() {
			return true // reported just below
		}
		targets, err := prom.Targets(ctx)
		return err == nil && len(targets) == 1 && targets[0].Health == "up"
	}, 60*time.Second, 250*time.Millisecond, "Prometheus never reported the exporter up")
	require.False(t, exp.Exited(), "the exporter exited:\n%s", exp.LogTail(2000))

	var names []string // the contract's signals, as stored
	for _, m := range contract.Signals {
		names = append(names, m.Series()...)
	}
	for _, name := range names {
		var got []testenv.Sample
		require.Eventually(t, func() bool {
			got, err = prom.Query(ctx, name)
			return err == nil && len(got) > 0
		}, 30*time.Second, 250*time.Millisecond, "%s never reached Prometheus", name)
		for _, s := range got {
			require.Equal(t, "cascade", s.Metric["job"], "%s: Prometheus owns job", name)
			require.Equal(t, addr, s.Metric["instance"], "%s: Prometheus owns instance", name)
			require.NotContains(t, s.Metric, "exported_instance", name)
			require.NotContains(t, s.Metric, "exported_job", name)
		}
	}

	expect := map[string]string{
		`sum(cascade_node_leases)`:                                                                              "3",
		`cascade_node_leases{state="expired"}`:                                                                  "1",
		`cascade_nodes{condition="ready"}`:                                                                      "2",
		`cascade_apiserver_memory_limit_bytes{replica="a"}`:                                                     fmt.Sprint(2 << 30),
		`cascade_apiserver_oom_kills_total{replica="a"}`:                                                        "3",
		`cascade_apiserver_up{replica="a"}`:                                                                     "1",
		`cascade_apiserver_memory_limit_bytes{replica="kube-apiserver-pod-1"}`:                                  fmt.Sprint(3 << 30),
		`cascade_apiserver_restarts_total{replica="kube-apiserver-pod-1"}`:                                      "4",
		`cascade_apiserver_oom_kills_total{replica="kube-apiserver-pod-1"}`:                                     "1",
		`cascade_gateway_requests_total{route="/api/v1/nodes/{name}",method="GET",code="200",client="kubelet"}`: "3",
	}
	for q, want := range expect {
		require.Eventually(t, func() bool {
			got, err := prom.Query(ctx, q)
			return err == nil && len(got) == 1 && got[0].Value[1] == want
		}, 30*time.Second, 250*time.Millisecond, "%s != %s", q, want)
	}

	// The exposition itself is lint-clean, and the web config is enforced.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err = client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	promtoolCheckMetrics(t, body)
}

func promtoolCheckMetrics(t *testing.T, exposition []byte) {
	t.Helper()
	promtool, err := testenv.ToolPath("promtool")
	require.NoError(t, err)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "promtool check metrics found problems")
}

// seedCluster creates three leases (fresh, fresh, expired), two Ready nodes
// and one API server pod whose last termination was an OOM kill.
func seedCluster(t *testing.T, cp *testenv.ControlPlane) {
	t.Helper()
	c, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	_, err = c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-node-lease"}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		require.NoError(t, err)
	}
	forty := int32(40)
	for name, age := range map[string]time.Duration{"n1": 0, "n2": time.Second, "n3": time.Hour} {
		_, err := c.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &name, LeaseDurationSeconds: &forty,
				RenewTime: &metav1.MicroTime{Time: time.Now().Add(-age)},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		// Keep n1 and n2 fresh for as long as the test runs.
		if age < time.Minute {
			go renewEvery(ctx, cp, name, 2*time.Second)
		}
	}
	for _, name := range []string{"n1", "n2"} {
		n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		require.NoError(t, err)
	}

	pod, err := c.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-pod-1", Labels: map[string]string{"component": "kube-apiserver"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("3Gi")}},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	finished := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "kube-apiserver", Ready: true, RestartCount: 4, Image: "registry.k8s.io/kube-apiserver:v1.37.2",
		ContainerID: "containerd://abc",
		State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: finished}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: "OOMKilled", ExitCode: 137, FinishedAt: finished, ContainerID: "containerd://old",
		}},
	}}
	_, err = c.CoreV1().Pods("kube-system").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func renewEvery(ctx context.Context, cp *testenv.ControlPlane, name string, every time.Duration) {
	c, err := cp.Clientset()
	if err != nil {
		return
	}
	leases := c.CoordinationV1().Leases("kube-node-lease")
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
}

// writeCgroupV2 writes a cgroup v2 memory controller directory as the kernel
// presents it, with a limit and three OOM kills.
func writeCgroupV2(t *testing.T, dir string, limit int64) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	files := map[string]string{
		"memory.current": "1610612736\n",
		"memory.max":     fmt.Sprintf("%d\n", limit),
		"memory.events":  "low 0\nhigh 0\nmax 57\noom 3\noom_kill 3\noom_group_kill 0\n",
		"memory.stat": "anon 1342177280\nfile 268435456\nkernel 16777216\nkernel_stack 1048576\npagetables 4194304\n" +
			"sec_pagetables 0\npercpu 0\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped 0\nfile_dirty 0\n" +
			"file_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon 1342177280\n" +
			"active_anon 0\ninactive_file 134217728\nactive_file 134217728\nunevictable 0\nslab_reclaimable 0\n" +
			"slab_unreclaimable 0\nslab 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\n" +
			"workingset_activate_anon 0\nworkingset_activate_file 0\nworkingset_restore_anon 0\n" +
			"workingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\n" +
			"pgscan_direct 0\npgsteal_kswapd 0\npgsteal_direct 0\npgfault 0\npgmajfault 0\npgrefill 0\n" +
			"pgactivate 0\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\nthp_collapse_alloc 0\n",
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

// writeWebConfig writes an exporter-toolkit web config with a self-signed
// certificate and one basic-auth user.
func writeWebConfig(t *testing.T, dir, user, password string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cascade-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	require.NoError(t, err)
	path := filepath.Join(dir, "web.yml")
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", certFile, keyFile, user, hash)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}
