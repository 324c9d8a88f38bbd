package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestImage builds the image with `make image`, twice, and runs it in a real
// container runtime: Debian's podman with runc, its storage in a temp dir so
// nothing of the machine's own is touched.
func TestImage(t *testing.T) {
	testenv.RequireLong(t)
	root, err := testenv.RepoRoot()
	require.NoError(t, err)

	// Two builds of one commit, in different folders: one digest.
	first, second := t.TempDir(), t.TempDir()
	ref := makeImage(t, root, first)
	require.Equal(t, ref, makeImage(t, root, second), "two builds of one commit must give one digest")
	a, err := os.ReadFile(filepath.Join(first, "cascade-image.tar"))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(second, "cascade-image.tar"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(a, b), "two builds of one commit must give the same archive")
	t.Logf("image %s: archive %.1f MB", ref, float64(len(a))/1e6)

	pm := newPodman(t)
	out := pm.run(t, "load", "--input", filepath.Join(first, "cascade-image.tar"))
	name, dgst, ok := strings.Cut(ref, "@")
	require.True(t, ok, ref)
	require.Contains(t, out, "Loaded image: "+name)
	require.Equal(t, dgst, strings.TrimSpace(pm.run(t, "image", "inspect", "--format", "{{.Digest}}", name)),
		"podman must keep the OCI manifest's digest")

	revision := strings.TrimSpace(string(must(exec.Command("git", "-C", root, "rev-parse", "HEAD").Output())))
	version := pm.run(t, append(pm.runArgs(), "--rm", name, "version")...)
	require.Contains(t, version, "revision: "+revision+")", "cascade version must print the commit")

	// The exporter Deployment runs the slim cascade-exporter of the image.
	t.Run("gateway exporter on a mounted log", func(t *testing.T) {
		logs := t.TempDir()
		require.NoError(t, os.Chmod(logs, 0o755)) // the image's user is not root
		line := `{"time":"2026-03-14T23:48:01+01:00","msec":"1773528481.102","remote_addr":"10.0.3.17","method":"PUT","uri":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-17?timeout=10s","status":"200","request_time":"0.004","upstream_status":"200","upstream_response_time":"0.004","bytes_sent":"712","user_agent":"kubelet/v1.37.2 (linux/amd64) kubernetes/abc123"}` + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(logs, "access.log"), []byte(strings.Repeat(line, 3)), 0o644))

		addr := freeAddr(t)
		container := "cascade-test-" + strconv.Itoa(os.Getpid())
		pm.run(t, append(pm.runArgs(), "--detach", "--name", container, "--network", "host",
			"--read-only", "--volume", logs+":/var/log/nginx:ro",
			"--entrypoint", "/usr/bin/cascade-exporter",
			name, "exporter", "--web.listen-address="+addr,
			"--no-exporter.nodelease", "--no-exporter.apimemory",
			"--exporter.gateway", "--gateway.log=nginx-json:/var/log/nginx/access.log", "--gateway.from-beginning")...)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := pm.cmd("logs", container).CombinedOutput()
				t.Logf("container log:\n%s", out)
			}
			_ = pm.cmd("rm", "--force", "--time", "0", container).Run()
		})

		const want = `cascade_gateway_requests_total{client="kubelet",code="200",method="PUT",route="/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"} 3`
		var metrics string
		require.Eventually(t, func() bool {
			metrics = get("http://" + addr + "/metrics")
			return strings.Contains(metrics, want)
		}, 60*time.Second, 100*time.Millisecond, "the image's exporter must count the mounted log's lines; last /metrics:\n%s", metrics)
		require.Contains(t, metrics, `cascade_exporter_build_info{`)
		require.Contains(t, metrics, `revision="`+revision+`"`)

		// It runs as the image's user, not root.
		pid := strings.TrimSpace(pm.run(t, "inspect", "--format", "{{.State.Pid}}", container))
		status, err := os.ReadFile("/proc/" + pid + "/status")
		require.NoError(t, err)
		require.Regexp(t, `(?m)^Uid:\s+65532\s`, string(status))
	})
}

// makeImage runs `make image` into dir and returns what it prints: the
// image's name, tag and digest.
func makeImage(t *testing.T, root, dir string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("make", "--no-print-directory", "image", "IMAGE_DIR="+dir)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "make image:\n%s\n%s", out, stderr.String())
	t.Logf("make image took %s", time.Since(start).Round(time.Second))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// podman runs Debian's podman as root with its own storage and runc: crun,
// Debian's default, cannot start containers on this kind of machine's
// cgroup layout.
type podman struct {
	bin  string
	args []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	bin, err := testenv.ToolPath("podman")
	require.NoError(t, err)
	dir := t.TempDir()
	pm := &podman{bin: bin, args: []string{
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", // works on any file system, overlay or not
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--runtime", "runc",
	}}
	// After the containers' own cleanups (registered later, run first):
	// drop the image so the storage holds nothing mounted.
	t.Cleanup(func() { _ = pm.cmd("rmi", "--all", "--force").Run() })
	return pm
}

func (pm *podman) cmd(args ...string) *exec.Cmd {
	return exec.Command(pm.bin, append(append([]string{}, pm.args...), args...)...)
}

func (pm *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := pm.cmd(args...).CombinedOutput()
	require.NoError(t, err, "podman %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// runArgs starts a `podman run` with explicit open-file and process limits:
// podman's defaults (1048576 open files, the host's process limit) are above
// what this kind of VM lets runc set even as root, and runc then refuses to
// start the container. The exporter needs far less than these.
func (pm *podman) runArgs() []string {
	return []string{"run", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func get(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
