package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lifecycleConfig is a small `cascade run` configuration: no targets, the
// embedded rules evaluated every second.
const lifecycleConfig = `global:
  evaluation_interval: 1s
cascade:
  storage: {path: data}
`

// request sends method to url with client and returns the status and body.
func request(t *testing.T, client *http.Client, method, url string, auth ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reloadTimestamp is when `cascade run` on base last loaded its configuration.
func reloadTimestamp(t *testing.T, addr string) float64 {
	return scrapeValue(t, addr, "cascade_config_last_reload_success_timestamp_seconds")
}

// TestLifecycleAPIIsOffByDefault: without --web.enable-lifecycle, anyone
// who reaches the port gets 403 from /-/reload and /-/quit, as from
// Prometheus, and nothing happens; SIGHUP still reloads.
func TestLifecycleAPIIsOffByDefault(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	proc := startRun(t, bin, dir, writeRunConfig(t, dir, lifecycleConfig), addr)
	require.Eventually(t, func() bool { return reloadTimestamp(t, addr) > 0 }, 30*time.Second, 100*time.Millisecond)
	loaded := reloadTimestamp(t, addr)

	for _, method := range []string{http.MethodPost, http.MethodPut} {
		for _, path := range []string{"/-/reload", "/-/quit"} {
			code, body := request(t, http.DefaultClient, method, "http://"+addr+path)
			require.Equal(t, http.StatusForbidden, code, "%s %s", method, path)
			require.Contains(t, body, "--web.enable-lifecycle")
		}
	}
	code, _ := request(t, http.DefaultClient, http.MethodGet, "http://"+addr+"/-/reload")
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.False(t, proc.Exited(), "/-/quit stopped cascade run with the lifecycle API off")
	require.Equal(t, loaded, reloadTimestamp(t, addr), "/-/reload reloaded with the lifecycle API off")

	require.NoError(t, syscall.Kill(proc.Pid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return reloadTimestamp(t, addr) > loaded }, 10*time.Second, 100*time.Millisecond,
		"SIGHUP no longer reloads")
}

// TestLifecycleAPIWhenOn: with --web.enable-lifecycle, /-/reload reloads and
// /-/quit stops the process cleanly.
func TestLifecycleAPIWhenOn(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	proc := startRun(t, bin, dir, writeRunConfig(t, dir, lifecycleConfig), addr, "--web.enable-lifecycle")
	require.Eventually(t, func() bool { return reloadTimestamp(t, addr) > 0 }, 30*time.Second, 100*time.Millisecond)
	loaded := reloadTimestamp(t, addr)

	for _, method := range []string{http.MethodPost, http.MethodPut} {
		code, body := request(t, http.DefaultClient, method, "http://"+addr+"/-/reload")
		require.Equal(t, http.StatusOK, code, body)
	}
	require.Greater(t, reloadTimestamp(t, addr), loaded)

	code, body := request(t, http.DefaultClient, http.MethodPost, "http://"+addr+"/-/quit")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, proc.Exited, 15*time.Second, 50*time.Millisecond, "/-/quit did not stop cascade run")
	require.Contains(t, proc.LogTail(2000), "asked to by /-/quit")
	require.Contains(t, proc.LogTail(2000), "cascade run stopped")
	require.NotContains(t, proc.LogTail(2000), "level=ERROR")
}

// TestLifecycleAPIStaysBehindTheWebConfig: with the lifecycle API on and a
// web config asking for TLS and basic auth, /-/reload and /-/quit answer
// only the right credentials over TLS.
func TestLifecycleAPIStaysBehindTheWebConfig(t *testing.T) {
	bin := cascadeBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	webConfig := writeWebConfig(t, dir, "operator", "s3cret")
	proc := startRun(t, bin, dir, writeRunConfig(t, dir, lifecycleConfig), addr,
		"--web.enable-lifecycle", "--web.config.file="+webConfig)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := "https://" + addr
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/-/healthy", nil)
		req.SetBasicAuth("operator", "s3cret")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)

	for _, path := range []string{"/-/reload", "/-/quit"} {
		code, _ := request(t, client, http.MethodPost, base+path)
		require.Equal(t, http.StatusUnauthorized, code, "%s without credentials", path)
		code, _ = request(t, client, http.MethodPost, base+path, "operator", "wrong")
		require.Equal(t, http.StatusUnauthorized, code, "%s with a wrong password", path)
	}
	// Plain HTTP gets no answer from the API.
	resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP reloaded: %s", b)
	}
	require.False(t, proc.Exited())

	code, body := request(t, client, http.MethodPost, base+"/-/reload", "operator", "s3cret")
	require.Equal(t, http.StatusOK, code, body)
	code, body = request(t, client, http.MethodPost, base+"/-/quit", "operator", "s3cret")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, proc.Exited, 15*time.Second, 50*time.Millisecond)
	require.False(t, strings.Contains(proc.LogTail(4000), "s3cret"), "the password reached the log")
}
