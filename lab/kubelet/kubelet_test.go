package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// A small fleet against a real API server with per-node tokens, the Node
// authorizer and NodeRestriction, through nginx: each node registers,
// renews its lease, reports Ready, takes its Ready back after the node
// controller's Unknown, and one stopped node stops renewing.
func TestFleetRenewsAndReportsLikeKubelet(t *testing.T) {
	testenv.RequireLong(t)
	dir := t.TempDir()
	etcd, err := testenv.StartEtcd(dir)
	require.NoError(t, err)
	t.Cleanup(etcd.Stop)
	var nodes []Node
	var tokens []testenv.StaticToken
	for i := range 5 {
		tok, err := testenv.RandomToken()
		require.NoError(t, err)
		n := Node{Name: fmt.Sprintf("node-%d", i), Token: tok}
		nodes = append(nodes, n)
		tokens = append(tokens, testenv.StaticToken{Token: tok, User: "system:node:" + n.Name, UID: n.Name, Groups: []string{"system:nodes"}})
	}
	creds, err := testenv.WriteCredentials(filepath.Join(dir, "creds"), tokens...)
	require.NoError(t, err)
	api, err := testenv.NewAPIServer(testenv.APIServerConfig{Dir: dir, EtcdURL: etcd.URL, Credentials: creds, Args: []string{
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction", "--disable-admission-plugins=ServiceAccount",
	}})
	require.NoError(t, err)
	require.NoError(t, api.Start(90*time.Second))
	t.Cleanup(api.Stop)
	gw := testenv.NginxForTest(t, api.URL, testenv.NginxOptions{})
	admin, err := kubernetes.NewForConfig(testenv.AdminConfig(api.URL, creds))
	require.NoError(t, err)

	f := NewFleet(Config{Server: gw.URL, Labels: map[string]string{"topology.kubernetes.io/zone": "lab-a"}, StartSpread: time.Second})
	f.Start(t.Context(), nodes)
	t.Cleanup(f.Stop)
	ctx := t.Context()

	ready := func(name string) corev1.ConditionStatus {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status
			}
		}
		return ""
	}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if ready(n.Name) != corev1.ConditionTrue {
				return false
			}
		}
		return true
	}, 60*time.Second, 200*time.Millisecond, "every node registers and reports Ready")
	require.Equal(t, 5, f.Registered())

	renewed := func(name string) time.Time {
		l, err := admin.CoordinationV1().Leases("kube-node-lease").Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return time.Time{}
		}
		require.Equal(t, "Node", l.OwnerReferences[0].Kind, "the node owns its lease")
		return l.Spec.RenewTime.Time
	}
	first := renewed("node-0")
	require.Eventually(t, func() bool { return renewed("node-0").After(first) }, 30*time.Second, 500*time.Millisecond, "the lease is renewed")

	// The node controller's Unknown is taken back at the next status check.
	n, err := admin.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	require.NoError(t, err)
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = corev1.ConditionUnknown
			n.Status.Conditions[i].Reason = "NodeStatusUnknown"
		}
	}
	_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ready("node-1") == corev1.ConditionTrue }, 30*time.Second, 200*time.Millisecond)

	// A node that dies stops renewing.
	require.True(t, f.StopNode("node-2"))
	time.Sleep(time.Second) // a renewal in flight lands
	stopped := renewed("node-2")
	time.Sleep(RenewInterval + 2*time.Second)
	require.Equal(t, stopped, renewed("node-2"))

	// Every request went through the gateway as kubelet, each node with its
	// own identity: none was refused.
	resp := f.Responses()
	require.Zero(t, resp[401]+resp[403], "responses: %v", resp)
	log, err := os.ReadFile(gw.AccessLog)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(log), `"method":"PUT","uri":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-0?timeout=10s"`), "no lease renewal in the gateway's log")
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		require.Contains(t, line, `"user_agent":"`+UserAgent+`"`)
	}
}
