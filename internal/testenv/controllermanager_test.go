package testenv

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The node lifecycle controller marks a node whose lease stopped NotReady
// (Ready Unknown) and taints it unreachable.
func TestControllerManagerMarksSilentNodeNotReady(t *testing.T) {
	cp := ControlPlaneForTest(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))
	kcm, err := StartControllerManager(ControllerManagerConfig{
		Dir: dir, Kubeconfig: kubeconfig,
		Args: []string{"--node-monitor-grace-period=10s", "--node-monitor-period=1s"},
	})
	require.NoError(t, err)
	t.Cleanup(kcm.Stop)

	c, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	now := metav1.Now()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	node, err = c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	require.NoError(t, err)
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now, Reason: "KubeletReady"}}
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = c.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1"), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: now.Time}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		n, err := c.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			ready = ready || cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionUnknown
		}
		tainted := false
		for _, taint := range n.Spec.Taints {
			tainted = tainted || taint.Key == corev1.TaintNodeUnreachable
		}
		return ready && tainted
	}, 90*time.Second, 500*time.Millisecond, "the silent node was never marked; kcm log:\n%s", kcm.LogTail(3000))
}

// SetUpstreams adds a second upstream without restarting nginx: both then
// take requests.
func TestNginxSetUpstreams(t *testing.T) {
	var a, b atomic.Int64
	upA := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { a.Add(1) }))
	defer upA.Close()
	upB := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { b.Add(1) }))
	defer upB.Close()
	n := NginxForTest(t, upA.URL, NginxOptions{WorkerConnections: 4096})
	pid := n.Pid()

	get := func() {
		resp, err := http.Get(n.URL + "/x")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	for range 10 {
		get()
	}
	require.EqualValues(t, 10, a.Load())
	require.Zero(t, b.Load())

	require.Error(t, n.SetUpstreams(upA.URL, "ftp://x"), "a bad upstream is refused")
	require.NoError(t, n.SetUpstreams(upA.URL, upB.URL))
	require.Eventually(t, func() bool {
		get()
		return b.Load() > 0
	}, 20*time.Second, 50*time.Millisecond, "the second upstream never took a request")
	require.Equal(t, pid, n.Pid(), "reloaded, not restarted")
}
