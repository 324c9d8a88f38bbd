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

// TestMistakesAreRefusedByName: values that used to be taken silently for
// a default, or accepted and failed later, stop the command with the flag
// or setting they are wrong in, and write nothing.
func TestMistakesAreRefusedByName(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	aFile := filepath.Join(dir, "a-file")
	require.NoError(t, os.WriteFile(aFile, nil, 0o644))
	configWithStorage := func(path string) string {
		return writeRunConfig(t, t.TempDir(), "cascade:\n  storage: {path: "+path+"}\n")
	}
	out := filepath.Join(dir, "out.om")

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no nodes":               {[]string{"scenario", "incident", "--nodes", "0", "-o", out}, "--nodes must be between 1 and 5000, not 0"},
		"too many nodes":         {[]string{"scenario", "incident", "--nodes=5001", "-o", out}, "--nodes must be between 1 and 5000, not 5001"},
		"no cluster":             {[]string{"scenario", "incident", "--cluster", "", "-o", out}, "--cluster must not be empty"},
		"no scrape interval":     {[]string{"scenario", "incident", "--scrape-interval", "0s", "-o", out}, "--scrape-interval must be between 1s and 5m0s, not 0s"},
		"demo without nodes":     {[]string{"demo", "--nodes", "0", "--output.dir", filepath.Join(dir, "demo")}, "--nodes must be between 1 and 50000, not 0"},
		"storage is a file":      {[]string{"run", "--config.check", "--config.file", configWithStorage(aFile)}, "cascade.storage.path " + aFile + " is not a directory"},
		"storage under a file":   {[]string{"run", "--config.check", "--config.file", configWithStorage(aFile + "/data")}, "cascade.storage.path: stat " + aFile + "/data: not a directory"},
		"run on storage a file":  {[]string{"run", "--no-exporter.nodelease", "--no-exporter.apimemory", "--web.listen-address", freeAddr(t), "--config.file", configWithStorage(aFile)}, "is not a directory"},
		"backtest of empty data": {[]string{"backtest", "--data", aFile}, "the data is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = dir
			got, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "%s", got)
			require.Equal(t, 1, exit.ExitCode(), "%s", got)
			require.Contains(t, string(got), tc.want)
			require.NotContains(t, string(got), "truncated")
			require.NoFileExists(t, out)
			require.NoDirExists(t, filepath.Join(dir, "demo"))
		})
	}
}
