package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NginxJSONLogFormat is the access log format the gateway exporter reads, as
// users paste it into nginx.conf.
const NginxJSONLogFormat = `log_format cascade_json escape=json '{'
    '"time":"$time_iso8601","msec":"$msec","remote_addr":"$remote_addr",'
    '"method":"$request_method","uri":"$request_uri","status":"$status",'
    '"request_time":"$request_time","upstream_status":"$upstream_status",'
    '"upstream_response_time":"$upstream_response_time",'
    '"bytes_sent":"$bytes_sent","user_agent":"$http_user_agent"}';`

// Nginx is a real nginx acting as the API gateway in front of kube-apiserver.
type Nginx struct {
	Dir       string
	URL       string // http://127.0.0.1:PORT
	AccessLog string // path of the JSON access log
	proc      *Process
	port      int
	opts      NginxOptions
}

// NginxOptions tunes the gateway.
type NginxOptions struct {
	// ProxyReadTimeout bounds how long nginx waits for the upstream before
	// answering 504; zero means nginx's default (60 s).
	ProxyReadTimeout time.Duration
	// WorkerConnections is nginx's per-worker connection limit (clients and
	// upstreams together); zero means 1024.
	WorkerConnections int
}

// StartNginx starts nginx in dir, proxying plain HTTP on a free loopback port
// to upstream (an http:// or https:// URL; TLS is not verified).
func StartNginx(dir, upstream string, opts NginxOptions) (*Nginx, error) {
	bin, err := ToolPath("nginx")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "tmp", sub), 0o755); err != nil {
			return nil, err
		}
	}
	n := &Nginx{Dir: dir, URL: "http://127.0.0.1:" + itoa(port), AccessLog: filepath.Join(dir, "access.log"), port: port, opts: opts}
	if err := n.writeConf(upstream); err != nil {
		return nil, err
	}
	n.proc, err = startProcess(dir, "nginx", bin, "-c", n.confPath(), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	if err != nil {
		return nil, err
	}
	err = waitFor(n.proc, 20*time.Second, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+itoa(port))
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		n.proc.Kill()
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return nil, fmt.Errorf("nginx: %w\n%s", err, b)
	}
	return n, nil
}

func (n *Nginx) confPath() string { return filepath.Join(n.Dir, "nginx.conf") }

// writeConf writes nginx.conf balancing over the upstreams, which share
// one scheme. Upstream connections are kept alive, as a gateway in front of
// many clients does.
func (n *Nginx) writeConf(upstreams ...string) error {
	if len(upstreams) == 0 {
		return fmt.Errorf("nginx: no upstream")
	}
	scheme := ""
	var servers strings.Builder
	for _, u := range upstreams {
		s, hostPort, ok := strings.Cut(strings.TrimSuffix(u, "/"), "://")
		if !ok || (s != "http" && s != "https") || hostPort == "" || strings.ContainsAny(hostPort, "/; \n") {
			return fmt.Errorf("nginx: upstream %q: want http(s)://host:port", u)
		}
		if scheme != "" && s != scheme {
			return fmt.Errorf("nginx: upstreams mix http and https")
		}
		scheme = s
		fmt.Fprintf(&servers, "        server %s;\n", hostPort)
	}
	readTimeout := ""
	if n.opts.ProxyReadTimeout > 0 {
		readTimeout = fmt.Sprintf("proxy_read_timeout %dms;", n.opts.ProxyReadTimeout.Milliseconds())
	}
	connections := n.opts.WorkerConnections
	if connections <= 0 {
		connections = 1024
	}
	// As root, nginx would switch its workers to "nobody", who cannot enter
	// the test's private temp dir; keep them as the current user.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;"
	}
	conf := fmt.Sprintf(`%s
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile %[9]d;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections %[8]d; }
http {
    %[3]s
    access_log %[4]s cascade_json;
    client_body_temp_path %[2]s/tmp/client_body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    upstream cascade_upstream {
%[6]s        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[5]d;
        location / {
            proxy_pass %[10]s://cascade_upstream;
            proxy_ssl_verify off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            %[7]s
        }
    }
}
`, user, n.Dir, NginxJSONLogFormat, n.AccessLog, n.port, servers.String(), readTimeout, connections, 2*connections+64, scheme)
	return os.WriteFile(n.confPath(), []byte(conf), 0o644)
}

// SetUpstreams points the gateway at these upstreams (another replica
// added, say) and has nginx reload its configuration (SIGHUP): new
// workers take new requests, the old ones finish theirs.
func (n *Nginx) SetUpstreams(upstreams ...string) error {
	if err := n.writeConf(upstreams...); err != nil {
		return err
	}
	return n.proc.cmd.Process.Signal(syscall.SIGHUP)
}

// Pid is nginx's master process id.
func (n *Nginx) Pid() int { return n.proc.Pid() }

// Reopen asks nginx to reopen its log files (SIGUSR1), as logrotate does.
func (n *Nginx) Reopen() error { return n.proc.cmd.Process.Signal(sigUSR1) }

// Stop stops nginx.
func (n *Nginx) Stop() { n.proc.Stop() }
