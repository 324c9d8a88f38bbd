package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cascadeBinary builds bin/cascade once for all tests of this package.
func cascadeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "cascade-bin")
		if buildErr == nil {
			binPath, buildErr = testenv.BuildCascade(binDir)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// TestBadInputFailsClearly: start-up errors name what is wrong and exit
// non-zero instead of serving a half-configured exporter.
func TestBadInputFailsClearly(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	badWeb := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(badWeb, []byte("tls_server_config: [not, a, map]\n"), 0o600))

	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"unknown flag":    {[]string{"exporter", "--no-such-flag"}, 2, "unknown long flag '--no-such-flag'"},
		"bad cgroup spec": {[]string{"exporter", "--no-exporter.nodelease", "--no-apimemory.pods", "--apimemory.cgroup=nodir"}, 1, "--apimemory.cgroup: cgroup"},
		"bad endpoint":    {[]string{"exporter", "--no-exporter.nodelease", "--no-apimemory.pods", "--apimemory.endpoint=a=ftp://x"}, 1, "--apimemory.endpoint"},
		"no kubeconfig":   {[]string{"exporter", "--kubeconfig=" + filepath.Join(dir, "missing")}, 1, "kubeconfig"},
		"all off":         {[]string{"exporter", "--no-exporter.nodelease", "--no-exporter.apimemory"}, 1, "every exporter is disabled"},
		"bad web config":  {[]string{"exporter", "--no-exporter.nodelease", "--no-apimemory.pods", "--apimemory.cgroup=a=/sys/fs/cgroup", "--web.config.file=" + badWeb}, 1, "invalid --web.config.file"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "none"))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "%s", out)
			require.Equal(t, tc.code, exit.ExitCode(), "%s", out)
			require.Contains(t, string(out), tc.want)
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(cascadeBinary(t), "version").CombinedOutput()
	require.NoError(t, err)
	require.Contains(t, string(out), "cascade, version")
}
