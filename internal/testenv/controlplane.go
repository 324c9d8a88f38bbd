package testenv

import (
	"crypto/tls"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ControlPlane is a real etcd and kube-apiserver on loopback. The API server
// can be killed and started again on the same port and data, as in an OOM.
type ControlPlane struct {
	Dir   string
	URL   string // https://127.0.0.1:PORT of kube-apiserver
	Token string // bearer token of a system:masters user

	etcd      *Etcd
	apiserver *APIServer
}

// StartControlPlane starts etcd and kube-apiserver in dir and waits until the
// API server answers /readyz.
func StartControlPlane(dir string) (*ControlPlane, error) {
	if _, err := ToolPath("kube-apiserver"); err != nil {
		return nil, err
	}
	etcd, err := StartEtcd(dir)
	if err != nil {
		return nil, err
	}
	creds, err := WriteCredentials(dir)
	if err != nil {
		etcd.Stop()
		return nil, err
	}
	apiserver, err := NewAPIServer(APIServerConfig{
		Dir:         dir,
		EtcdURL:     etcd.URL,
		Credentials: creds,
		Args: []string{
			"--authorization-mode=RBAC",
			// No controller-manager runs, so no namespace gets its "default"
			// service account; tests create pods without one.
			"--disable-admission-plugins=ServiceAccount",
			"--max-requests-inflight=2000",
			"--max-mutating-requests-inflight=1000",
		},
	})
	if err != nil {
		etcd.Stop()
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, URL: apiserver.URL, Token: creds.Token, etcd: etcd, apiserver: apiserver}
	if err := cp.StartAPIServer(); err != nil {
		etcd.Stop()
		return nil, err
	}
	return cp, nil
}

// StartAPIServer starts kube-apiserver (again) on the control plane's port and
// waits for /readyz.
func (cp *ControlPlane) StartAPIServer() error { return cp.apiserver.Start(90 * time.Second) }

// KillAPIServer kills kube-apiserver with SIGKILL, as the OOM killer would.
func (cp *ControlPlane) KillAPIServer() { cp.apiserver.Kill() }

// APIServerPid is the pid of the running kube-apiserver, 0 if none runs.
func (cp *ControlPlane) APIServerPid() int { return cp.apiserver.Pid() }

// EtcdPid is etcd's process id.
func (cp *ControlPlane) EtcdPid() int { return cp.etcd.Pid() }

// Stop stops kube-apiserver and etcd.
func (cp *ControlPlane) Stop() {
	cp.apiserver.Stop()
	cp.etcd.Stop()
}

// RESTConfig returns a client config for the admin user. TLS is not verified:
// the serving certificate is self-signed by the API server at start.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return AdminConfig(cp.URL, &Credentials{Dir: cp.Dir, Token: cp.Token})
}

// Clientset returns a typed client for the admin user.
func (cp *ControlPlane) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.RESTConfig())
}

// WriteKubeconfig writes a kubeconfig for the admin user to path.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	return WriteKubeconfig(path, cp.URL, cp.Token)
}

func insecureClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
}
