package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Etcd is a real etcd on loopback, with its data in a directory.
type Etcd struct {
	URL  string // http://127.0.0.1:PORT
	proc *Process
}

// StartEtcd starts etcd with its data in dir and waits until it is healthy.
func StartEtcd(dir string) (*Etcd, error) {
	bin, err := ToolPath("etcd")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	e := &Etcd{URL: "http://127.0.0.1:" + itoa(ports[0])}
	peerURL := "http://127.0.0.1:" + itoa(ports[1])
	e.proc, err = startProcess(dir, "etcd", bin,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+e.URL,
		"--advertise-client-urls="+e.URL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(e.proc, 30*time.Second, httpOK(http.DefaultClient, e.URL+"/health", nil)); err != nil {
		e.proc.Kill()
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return e, nil
}

// Pid is etcd's process id.
func (e *Etcd) Pid() int { return e.proc.Pid() }

// Stop stops etcd.
func (e *Etcd) Stop() { e.proc.Stop() }

// StaticToken is one line of kube-apiserver's --token-auth-file.
type StaticToken struct {
	Token, User, UID string
	Groups           []string
}

// Credentials are what every API server replica of one cluster shares, in
// Dir: the static tokens (the first a system:masters admin) and the
// service account key pair.
type Credentials struct {
	Dir   string
	Token string // the admin's bearer token
}

// WriteCredentials writes a cluster's credentials into dir: tokens.csv with
// a new admin token and the extra tokens, sa.key and sa.pub.
func WriteCredentials(dir string, extra ...StaticToken) (*Credentials, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	token, err := RandomToken()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, t := range append([]StaticToken{{Token: token, User: "admin", UID: "admin", Groups: []string{"system:masters"}}}, extra...) {
		if strings.ContainsAny(t.Token+t.User+t.UID+strings.Join(t.Groups, ""), ",\"\n") {
			return nil, fmt.Errorf("static token of %q: commas, quotes and newlines cannot be written to tokens.csv", t.User)
		}
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", t.Token, t.User, t.UID, strings.Join(t.Groups, ","))
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	return &Credentials{Dir: dir, Token: token}, nil
}

// RandomToken is 128 random bits in hex, for bearer tokens.
func RandomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// APIServerConfig is one kube-apiserver replica.
type APIServerConfig struct {
	// Dir holds its serving certificates and its log.
	Dir     string
	EtcdURL string
	// EtcdPrefix separates clusters sharing one etcd; empty: /registry.
	EtcdPrefix  string
	Credentials *Credentials
	// Args are added to the common ones (apiserverArgs) and must not
	// repeat them.
	Args []string
	// Memory, if set, runs the server under that memory limit.
	Memory MemoryLimit
	// Name names its process and log file; empty: kube-apiserver.
	Name string
}

// APIServer is one kube-apiserver replica on a fixed loopback port. It can
// be killed and started again on the same port, as in an OOM.
type APIServer struct {
	URL  string // https://127.0.0.1:PORT
	Port int
	cfg  APIServerConfig

	mu   sync.Mutex
	proc *Process
}

// NewAPIServer picks a free port for a replica; Start starts it.
func NewAPIServer(cfg APIServerConfig) (*APIServer, error) {
	if cfg.Name == "" {
		cfg.Name = "kube-apiserver"
	}
	if cfg.Credentials == nil || cfg.EtcdURL == "" || cfg.Dir == "" {
		return nil, fmt.Errorf("%s: Dir, EtcdURL and Credentials are required", cfg.Name)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &APIServer{URL: "https://127.0.0.1:" + itoa(port), Port: port, cfg: cfg}, nil
}

// apiserverArgs are the flags every replica gets: loopback, static tokens,
// service account keys. Authorization and admission are the caller's.
func apiserverArgs(cfg APIServerConfig, port int) []string {
	prefix := cfg.EtcdPrefix
	if prefix == "" {
		prefix = "/registry"
	}
	creds := cfg.Credentials.Dir
	return []string{
		"--etcd-servers=" + cfg.EtcdURL,
		"--etcd-prefix=" + prefix,
		"--secure-port=" + itoa(port),
		"--bind-address=127.0.0.1",
		// No advertise address: the endpoint reconciler refuses loopback, and
		// nothing here needs the kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(cfg.Dir, "certs"),
		"--token-auth-file=" + filepath.Join(creds, "tokens.csv"),
		"--service-account-key-file=" + filepath.Join(creds, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(creds, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--v=0",
	}
}

// Start starts the replica (again) and waits up to timeout for /readyz.
func (a *APIServer) Start(timeout time.Duration) error {
	bin, err := ToolPath("kube-apiserver")
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil && !a.proc.Exited() {
		return fmt.Errorf("%s already running (pid %d)", a.cfg.Name, a.proc.Pid())
	}
	args := append(apiserverArgs(a.cfg, a.Port), a.cfg.Args...)
	var p *Process
	if a.cfg.Memory != nil {
		p, err = a.cfg.Memory.StartProcess(a.cfg.Dir, a.cfg.Name, bin, args...)
	} else {
		p, err = startProcess(a.cfg.Dir, a.cfg.Name, bin, args...)
	}
	if err != nil {
		return err
	}
	a.proc = p
	header := http.Header{"Authorization": {"Bearer " + a.cfg.Credentials.Token}}
	if err := waitFor(p, timeout, httpOK(insecureClient(), a.URL+"/readyz", header)); err != nil {
		p.Kill()
		return fmt.Errorf("%s: %w", a.cfg.Name, err)
	}
	return nil
}

// Process is the replica's current process, nil before the first Start.
func (a *APIServer) Process() *Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// Pid is the pid of the running replica, 0 if none runs.
func (a *APIServer) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil || a.proc.Exited() {
		return 0
	}
	return a.proc.Pid()
}

// Kill kills the replica with SIGKILL.
func (a *APIServer) Kill() {
	if p := a.Process(); p != nil {
		p.Kill()
	}
}

// Stop stops the replica.
func (a *APIServer) Stop() {
	if p := a.Process(); p != nil {
		p.Stop()
	}
}

// LogTail is the end of the replica's log, for error messages.
func (a *APIServer) LogTail(n int) string {
	if p := a.Process(); p != nil {
		return p.LogTail(n)
	}
	return ""
}

// AdminConfig is a client config for the cluster's admin on url (a replica
// or a gateway in front of it). TLS is not verified: the serving
// certificate is self-signed by the API server at start.
func AdminConfig(url string, creds *Credentials) *rest.Config {
	return &rest.Config{
		Host:            url,
		BearerToken:     creds.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: !strings.HasPrefix(url, "http://")},
		QPS:             -1, // tests and benchmarks drive load on purpose
	}
}

// WriteKubeconfig writes a kubeconfig for bearer token on url to path.
func WriteKubeconfig(path, url, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: url, InsecureSkipTLSVerify: strings.HasPrefix(url, "https://")}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "user"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}
