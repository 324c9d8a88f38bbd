package testenv

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestControlPlaneSurvivesAPIServerKill checks the harness itself: objects
// written before a kill are there after the restart, on the same URL.
func TestControlPlaneSurvivesAPIServerKill(t *testing.T) {
	cp := ControlPlaneForTest(t)
	c, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	_, err = c.CoordinationV1().Leases("default").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	pid := cp.APIServerPid()
	require.NotZero(t, pid)
	cp.KillAPIServer()
	require.Zero(t, cp.APIServerPid())
	_, err = c.CoordinationV1().Leases("default").Get(ctx, "a", metav1.GetOptions{})
	require.Error(t, err, "the API server is dead")

	require.NoError(t, cp.StartAPIServer())
	require.NotEqual(t, pid, cp.APIServerPid())
	_, err = c.CoordinationV1().Leases("default").Get(ctx, "a", metav1.GetOptions{})
	require.NoError(t, err, "etcd kept the lease")
}

// TestNginxLogsJSONInFrontOfAPIServer sends requests through nginx and reads
// them back from its JSON access log.
func TestNginxLogsJSONInFrontOfAPIServer(t *testing.T) {
	cp := ControlPlaneForTest(t)
	n := NginxForTest(t, cp.URL, NginxOptions{ProxyReadTimeout: time.Second})

	get := func(path, agent string) int {
		req, err := http.NewRequest(http.MethodGet, n.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+cp.Token)
		req.Header.Set("User-Agent", agent)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, get("/api/v1/namespaces/kube-system", "kubelet/v1.37.2 (linux/amd64) kubernetes/abc"))
	require.Equal(t, 404, get("/api/v1/namespaces/nope", "kubectl/v1.37.2"))
	// A watch that outlives nginx's proxy timeout ends as 504.
	require.Equal(t, 504, get("/api/v1/namespaces?watch=true&timeoutSeconds=30", "kube-controller-manager/v1.37.2"))

	type line struct {
		Method    string `json:"method"`
		URI       string `json:"uri"`
		Status    string `json:"status"`
		UserAgent string `json:"user_agent"`
	}
	var lines []line
	require.Eventually(t, func() bool {
		f, err := os.Open(n.AccessLog)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l line
			require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
			lines = append(lines, l)
		}
		return len(lines) == 3
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, "200", lines[0].Status)
	require.True(t, strings.HasPrefix(lines[0].UserAgent, "kubelet/"))
	require.Equal(t, "/api/v1/namespaces/nope", lines[1].URI)
	require.Equal(t, "504", lines[2].Status)
	require.Equal(t, "GET", lines[2].Method)
}
