package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControlPlane is a real etcd and kube-apiserver on loopback. The API server
// can be killed and started again on the same port and data, as in an OOM.
type ControlPlane struct {
	Dir   string
	URL   string // https://127.0.0.1:PORT of kube-apiserver
	Token string // bearer token of a system:masters user

	etcdURL string
	apiPort int
	etcd    *Process

	mu        sync.Mutex
	apiserver *Process
}

// StartControlPlane starts etcd and kube-apiserver in dir and waits until the
// API server answers /readyz.
func StartControlPlane(dir string) (*ControlPlane, error) {
	etcdBin, err := ToolPath("etcd")
	if err != nil {
		return nil, err
	}
	if _, err := ToolPath("kube-apiserver"); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{
		Dir:     dir,
		etcdURL: "http://127.0.0.1:" + itoa(ports[0]),
		apiPort: ports[2],
		URL:     "https://127.0.0.1:" + itoa(ports[2]),
	}
	peerURL := "http://127.0.0.1:" + itoa(ports[1])
	cp.etcd, err = startProcess(dir, "etcd", etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+cp.etcdURL,
		"--advertise-client-urls="+cp.etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(cp.etcd, 30*time.Second, httpOK(http.DefaultClient, cp.etcdURL+"/health", nil)); err != nil {
		cp.etcd.Kill()
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if err := cp.writeCredentials(); err != nil {
		cp.etcd.Kill()
		return nil, err
	}
	if err := cp.StartAPIServer(); err != nil {
		cp.etcd.Kill()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) writeCredentials() error {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	cp.Token = hex.EncodeToString(token)
	tokens := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", cp.Token)
	if err := os.WriteFile(filepath.Join(cp.Dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cp.Dir, "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cp.Dir, "sa.pub"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// StartAPIServer starts kube-apiserver (again) on the control plane's port and
// waits for /readyz.
func (cp *ControlPlane) StartAPIServer() error {
	bin, err := ToolPath("kube-apiserver")
	if err != nil {
		return err
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver != nil && !cp.apiserver.Exited() {
		return fmt.Errorf("kube-apiserver already running (pid %d)", cp.apiserver.Pid())
	}
	p, err := startProcess(cp.Dir, "kube-apiserver", bin,
		"--etcd-servers="+cp.etcdURL,
		"--secure-port="+itoa(cp.apiPort),
		"--bind-address=127.0.0.1",
		// No advertise address: the endpoint reconciler refuses loopback, and
		// nothing here needs the kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(cp.Dir, "certs"),
		"--token-auth-file="+filepath.Join(cp.Dir, "tokens.csv"),
		"--service-account-key-file="+filepath.Join(cp.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(cp.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--authorization-mode=RBAC",
		// No controller-manager runs, so no namespace gets its "default"
		// service account; tests create pods without one.
		"--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
		"--v=0",
	)
	if err != nil {
		return err
	}
	cp.apiserver = p
	header := http.Header{"Authorization": {"Bearer " + cp.Token}}
	if err := waitFor(p, 90*time.Second, httpOK(insecureClient(), cp.URL+"/readyz", header)); err != nil {
		p.Kill()
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// KillAPIServer kills kube-apiserver with SIGKILL, as the OOM killer would.
func (cp *ControlPlane) KillAPIServer() {
	cp.mu.Lock()
	p := cp.apiserver
	cp.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// APIServerPid is the pid of the running kube-apiserver, 0 if none runs.
func (cp *ControlPlane) APIServerPid() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.apiserver == nil || cp.apiserver.Exited() {
		return 0
	}
	return cp.apiserver.Pid()
}

// Stop stops kube-apiserver and etcd.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	p := cp.apiserver
	cp.mu.Unlock()
	if p != nil {
		p.Stop()
	}
	cp.etcd.Stop()
}

// RESTConfig returns a client config for the admin user. TLS is not verified:
// the serving certificate is self-signed by the API server at start.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             -1, // tests and benchmarks drive load on purpose
	}
}

// Clientset returns a typed client for the admin user.
func (cp *ControlPlane) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.RESTConfig())
}

// WriteKubeconfig writes a kubeconfig for the admin user to path.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: cp.URL, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: cp.Token}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}

func insecureClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}
