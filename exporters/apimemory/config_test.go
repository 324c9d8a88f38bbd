package apimemory

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseEndpointSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    EndpointSpec
		wantErr string
	}{
		{in: "https://10.0.0.1:6443/metrics", want: EndpointSpec{Replica: "10.0.0.1:6443", URL: "https://10.0.0.1:6443/metrics"}},
		{in: "https://10.0.0.1:6443", want: EndpointSpec{Replica: "10.0.0.1:6443", URL: "https://10.0.0.1:6443/metrics"}},
		{in: "apiserver-a=https://10.0.0.1:6443/", want: EndpointSpec{Replica: "apiserver-a", URL: "https://10.0.0.1:6443/metrics"}},
		{in: "a=https://lb.example:443/metrics?x=1", want: EndpointSpec{Replica: "a", URL: "https://lb.example:443/metrics?x=1"}},
		{in: "10.0.0.1:6443", wantErr: "want [replica=]"},
		{in: "=https://10.0.0.1:6443", wantErr: "empty replica name"},
		{in: "a=ftp://10.0.0.1", wantErr: `scheme "ftp"`},
		{in: "a=https://", wantErr: "no host"},
		{in: "a=https://10.0.0.1:bad port", wantErr: "invalid port"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpointSpec(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseCgroupSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    CgroupSpec
		wantErr string
	}{
		{in: "a=/sys/fs/cgroup/system.slice/kube-apiserver.service/", want: CgroupSpec{Replica: "a", Dir: "/sys/fs/cgroup/system.slice/kube-apiserver.service"}},
		{in: "a=pid:1234", want: CgroupSpec{Replica: "a", PID: 1234}},
		{in: "/sys/fs/cgroup", wantErr: "want replica="},
		{in: "=/sys/fs/cgroup", wantErr: "empty replica name"},
		{in: "a=pid:", wantErr: "not a positive process id"},
		{in: "a=pid:-3", wantErr: "not a positive process id"},
		{in: "a=pid:12x", wantErr: "not a positive process id"},
		{in: "a=sys/fs/cgroup", wantErr: "neither an absolute directory nor pid:PID"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCgroupSpec(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("abc\n"), 0o600))
	emptyToken := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(emptyToken, nil, 0o600))
	notPEM := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))

	valid := func() Config {
		c := DefaultConfig()
		c.Endpoints = []EndpointSpec{{Replica: "a", URL: "https://127.0.0.1:6443/metrics"}}
		c.BearerTokenFile = token
		c.Cgroups = []CgroupSpec{{Replica: "a", PID: 1}}
		c.Pods.Enabled = true
		return c
	}
	good := valid()
	require.NoError(t, good.Validate())

	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr []string
	}{
		{"no source", func(c *Config) { c.Endpoints, c.Cgroups, c.Pods.Enabled = nil, nil, false }, []string{"no source configured"}},
		{"bad URL", func(c *Config) { c.Endpoints[0].URL = "127.0.0.1:6443" }, []string{`Endpoints[0].URL "127.0.0.1:6443"`}},
		{"duplicate endpoint", func(c *Config) { c.Endpoints = append(c.Endpoints, c.Endpoints[0]) }, []string{`Endpoints[1].Replica "a": given to two endpoints`}},
		{"missing token", func(c *Config) { c.BearerTokenFile = filepath.Join(dir, "nope") }, []string{"BearerTokenFile: open", "no such file"}},
		{"empty token", func(c *Config) { c.BearerTokenFile = emptyToken }, []string{"BearerTokenFile", "empty"}},
		{"CA not PEM", func(c *Config) { c.CAFile = notPEM }, []string{"CAFile", "no PEM certificate"}},
		{"cgroup both", func(c *Config) { c.Cgroups[0].Dir = "/x" }, []string{"Cgroups[0]: set exactly one of Dir and PID"}},
		{"cgroup relative", func(c *Config) { c.Cgroups[0] = CgroupSpec{Replica: "a", Dir: "x"} }, []string{`Cgroups[0].Dir "x": not an absolute path`}},
		{"cgroup no replica", func(c *Config) { c.Cgroups[0].Replica = "" }, []string{"Cgroups[0].Replica: empty replica name"}},
		{"bad selector", func(c *Config) { c.Pods.LabelSelector = "component in (" }, []string{`Pods.LabelSelector "component in ("`}},
		{"no namespace", func(c *Config) { c.Pods.Namespace = "" }, []string{"Pods.Namespace: empty"}},
		{"zero interval", func(c *Config) { c.PollInterval = 0 }, []string{"PollInterval 0s: must be positive"}},
		{"timeout too long", func(c *Config) { c.Timeout = time.Minute }, []string{"Timeout 1m0s: longer than PollInterval 5s"}},
		{"several at once", func(c *Config) { c.Timeout, c.Pods.Container = 0, "" }, []string{"Timeout 0s", "Pods.Container: empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			require.Error(t, err)
			for _, want := range tc.wantErr {
				require.ErrorContains(t, err, want)
			}
			_, err = New(c, nil, nil)
			require.Error(t, err, "New must refuse what Validate refuses")
		})
	}
}

func TestNewNeedsClientForPods(t *testing.T) {
	c := DefaultConfig()
	c.Pods.Enabled = true
	_, err := New(c, nil, nil)
	require.ErrorContains(t, err, "no Kubernetes client")
}
