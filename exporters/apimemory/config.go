package apimemory

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/cascade-sre/cascade/internal/redact"
)

// Defaults, exported so the command can show them in its flag help.
const (
	DefaultPollInterval  = 5 * time.Second
	DefaultTimeout       = 3 * time.Second
	DefaultProcRoot      = "/proc"
	DefaultCgroupRoot    = "/sys/fs/cgroup"
	DefaultPodNamespace  = "kube-system"
	DefaultPodSelector   = "component=kube-apiserver"
	DefaultPodContainer  = "kube-apiserver"
	DefaultForgetAfter   = 5 * time.Minute
	defaultMetricsPath   = "/metrics"
	pidSpecPrefix        = "pid:"
	maxReplicaNameLength = 253 // a pod name's limit; longer is a mistake
)

// Config says where the exporter reads API server memory from. Start from
// DefaultConfig, set what the user gave, then call Validate (New does).
type Config struct {
	// Endpoints are API server /metrics URLs to probe, one per replica.
	Endpoints []EndpointSpec
	// BearerTokenFile, if set, is read before every probe (so a rotated
	// token is picked up) and sent as "Authorization: Bearer".
	BearerTokenFile string
	// CAFile, if set, holds the PEM certificates that sign the endpoints'
	// serving certificates; otherwise the system pool is used.
	CAFile string
	// InsecureSkipVerify turns off TLS verification of the endpoints.
	InsecureSkipVerify bool

	// Cgroups are local cgroups (v1 or v2, detected per poll) to read.
	Cgroups []CgroupSpec
	// ProcRoot is where pid: specs are resolved (<ProcRoot>/PID/cgroup).
	ProcRoot string
	// CgroupRoot is where cgroup paths from /proc are joined; the v1 memory
	// hierarchy is expected under <CgroupRoot>/memory.
	CgroupRoot string

	// Pods watches API server pods through the cluster's API.
	Pods PodsConfig

	// PollInterval is how often endpoints and cgroups are read.
	PollInterval time.Duration
	// Timeout bounds one probe of one endpoint.
	Timeout time.Duration
	// ForgetAfter is how long a replica that is gone (its pod deleted) is
	// remembered: re-created within it, as a static pod's mirror is, it
	// continues its counts; after it, it is forgotten, so that rollouts of
	// pods with new names do not add state and series for good. Replicas of
	// endpoints and cgroups are never gone.
	ForgetAfter time.Duration
}

// EndpointSpec is one API server /metrics endpoint and the replica it feeds.
type EndpointSpec struct {
	Replica string
	URL     string
}

// CgroupSpec is one cgroup and the replica it feeds: either Dir, or PID,
// whose cgroup is looked up again at every poll.
type CgroupSpec struct {
	Replica string
	Dir     string
	PID     int
}

// PodsConfig selects the API server pods whose status is watched. The
// replica name of each is its pod name.
type PodsConfig struct {
	Enabled       bool
	Namespace     string
	LabelSelector string
	Container     string
}

// DefaultConfig returns a Config with every default set and no source.
func DefaultConfig() Config {
	return Config{
		ProcRoot:   DefaultProcRoot,
		CgroupRoot: DefaultCgroupRoot,
		Pods: PodsConfig{
			Namespace:     DefaultPodNamespace,
			LabelSelector: DefaultPodSelector,
			Container:     DefaultPodContainer,
		},
		PollInterval: DefaultPollInterval,
		Timeout:      DefaultTimeout,
		ForgetAfter:  DefaultForgetAfter,
	}
}

// ParseEndpointSpec parses a flag value "[replica=]URL". Without a replica
// name the URL's host:port names the replica; a URL without a path gets
// /metrics. A password in the URL is used for basic auth and masked in
// errors and logs.
func ParseEndpointSpec(s string) (EndpointSpec, error) {
	spec, err := parseEndpointSpec(s)
	if err != nil {
		// Whatever part of s it quotes, masked.
		return EndpointSpec{}, errors.New(redact.URL(err.Error()))
	}
	return spec, nil
}

func parseEndpointSpec(s string) (EndpointSpec, error) {
	replica, rawURL := "", s
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		var ok bool
		replica, rawURL, ok = strings.Cut(s, "=")
		if !ok {
			return EndpointSpec{}, fmt.Errorf("endpoint %q: want [replica=]https://host:port/metrics", s)
		}
		if err := checkReplicaName(replica); err != nil {
			return EndpointSpec{}, fmt.Errorf("endpoint %q: %w", s, err)
		}
	}
	u, err := parseEndpointURL(rawURL)
	if err != nil {
		return EndpointSpec{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	if replica == "" {
		replica = u.Host
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = defaultMetricsPath
	}
	return EndpointSpec{Replica: replica, URL: u.String()}, nil
}

// ParseCgroupSpec parses a flag value "replica=/path/to/cgroup/dir" or
// "replica=pid:PID".
func ParseCgroupSpec(s string) (CgroupSpec, error) {
	replica, target, ok := strings.Cut(s, "=")
	if !ok {
		return CgroupSpec{}, fmt.Errorf("cgroup %q: want replica=/path/to/cgroup or replica=pid:PID", s)
	}
	if err := checkReplicaName(replica); err != nil {
		return CgroupSpec{}, fmt.Errorf("cgroup %q: %w", s, err)
	}
	if pid, isPID := strings.CutPrefix(target, pidSpecPrefix); isPID {
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 {
			return CgroupSpec{}, fmt.Errorf("cgroup %q: %q is not a positive process id", s, pid)
		}
		return CgroupSpec{Replica: replica, PID: n}, nil
	}
	if !filepath.IsAbs(target) {
		return CgroupSpec{}, fmt.Errorf("cgroup %q: %q is neither an absolute directory nor pid:PID", s, target)
	}
	return CgroupSpec{Replica: replica, Dir: filepath.Clean(target)}, nil
}

// Validate reports every bad field at once, each error naming the field and
// the value.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Endpoints) == 0 && len(c.Cgroups) == 0 && !c.Pods.Enabled {
		bad("no source configured: give at least one endpoint, cgroup, or enable the pod source")
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		if err := checkReplicaName(e.Replica); err != nil {
			bad("Endpoints[%d].Replica: %w", i, err)
		}
		if _, err := parseEndpointURL(e.URL); err != nil {
			bad("Endpoints[%d].URL %q: %w", i, redact.URL(e.URL), err)
		}
		if seen[e.Replica] {
			bad("Endpoints[%d].Replica %q: given to two endpoints", i, e.Replica)
		}
		seen[e.Replica] = true
	}
	if c.BearerTokenFile != "" {
		if b, err := os.ReadFile(c.BearerTokenFile); err != nil {
			bad("BearerTokenFile: %w", err)
		} else if len(strings.TrimSpace(string(b))) == 0 {
			bad("BearerTokenFile %q: empty", c.BearerTokenFile)
		}
	}
	if c.CAFile != "" {
		if _, err := loadCertPool(c.CAFile); err != nil {
			bad("CAFile: %w", err)
		}
	}

	clear(seen)
	for i, g := range c.Cgroups {
		if err := checkReplicaName(g.Replica); err != nil {
			bad("Cgroups[%d].Replica: %w", i, err)
		}
		switch {
		case (g.Dir == "") == (g.PID == 0):
			bad("Cgroups[%d]: set exactly one of Dir and PID", i)
		case g.PID < 0:
			bad("Cgroups[%d].PID %d: not a process id", i, g.PID)
		case g.Dir != "" && !filepath.IsAbs(g.Dir):
			bad("Cgroups[%d].Dir %q: not an absolute path", i, g.Dir)
		}
		if seen[g.Replica] {
			bad("Cgroups[%d].Replica %q: given to two cgroups", i, g.Replica)
		}
		seen[g.Replica] = true
	}
	if len(c.Cgroups) > 0 {
		if c.ProcRoot == "" {
			bad("ProcRoot: empty")
		}
		if c.CgroupRoot == "" {
			bad("CgroupRoot: empty")
		}
	}

	if c.Pods.Enabled {
		if c.Pods.Namespace == "" {
			bad("Pods.Namespace: empty")
		}
		if c.Pods.Container == "" {
			bad("Pods.Container: empty")
		}
		if _, err := labels.Parse(c.Pods.LabelSelector); err != nil {
			bad("Pods.LabelSelector %q: %w", c.Pods.LabelSelector, err)
		}
	}

	if c.PollInterval <= 0 {
		bad("PollInterval %s: must be positive", c.PollInterval)
	}
	if c.Timeout <= 0 {
		bad("Timeout %s: must be positive", c.Timeout)
	} else if c.PollInterval > 0 && c.Timeout > c.PollInterval {
		bad("Timeout %s: longer than PollInterval %s, probes would pile up", c.Timeout, c.PollInterval)
	}
	if c.ForgetAfter < 0 {
		bad("ForgetAfter %s: must not be negative", c.ForgetAfter)
	}
	return errors.Join(errs...)
}

// parseEndpointURL parses an endpoint's URL. Its errors do not quote the
// URL, which may hold a password: callers name it, masked.
func parseEndpointURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		return nil, uerr.Err
	}
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q: want https (or http)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	return u, nil
}

func checkReplicaName(name string) error {
	switch {
	case name == "":
		return errors.New("empty replica name")
	case len(name) > maxReplicaNameLength:
		return fmt.Errorf("replica name longer than %d bytes", maxReplicaNameLength)
	case !utf8.ValidString(name):
		return fmt.Errorf("replica name %q is not valid UTF-8", name)
	}
	return nil
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}
