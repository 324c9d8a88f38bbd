package apimemory

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// fakeClock is the time of a test, moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestGoneReplicasAreForgotten: every rollout of API server pods with new
// names left a replica behind in the pod map and the exported counters, so
// series and memory grew for good. Replicas gone for ForgetAfter are
// forgotten; those of endpoints and cgroups are served whatever happens.
func TestGoneReplicasAreForgotten(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.ForgetAfter = 5 * time.Minute
	// An endpoint that never answers: its replica stays, up=0.
	cfg.Endpoints = []EndpointSpec{{Replica: "pinned", URL: "http://127.0.0.1:1/metrics"}}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	e.now = clock.now
	s := testPodSource()
	s.now, s.forgetAfter = clock.now, cfg.ForgetAfter
	e.pods = s
	e.endpoints[0].poll(t.Context())

	// Thirty rollouts a minute apart, each pod replaced by one of a new name.
	for i := range 30 {
		s.update(apiserverPod(fmt.Sprintf("kube-apiserver-%d", i), "2Gi", corev1.ContainerStatus{Ready: true, RestartCount: 2}))
		if i > 0 {
			s.delete(apiserverPod(fmt.Sprintf("kube-apiserver-%d", i-1), "2Gi", corev1.ContainerStatus{}))
		}
		require.NoError(t, compareMetrics(e, fmt.Sprintf(`
cascade_apiserver_restarts_total{replica="kube-apiserver-%d"} 2
cascade_apiserver_restarts_total{replica="pinned"} 0
`, i), "cascade_apiserver_restarts_total"))
		clock.advance(time.Minute)
	}
	// The live pod, the endpoint's replica, and the five pods deleted
	// within the last five minutes, no more.
	require.Len(t, s.pods, 6)
	require.LessOrEqual(t, len(e.exported), len(s.pods)+1)

	clock.advance(time.Hour)
	require.NoError(t, compareMetrics(e, `
cascade_apiserver_oom_kills_total{replica="kube-apiserver-29"} 0
cascade_apiserver_restarts_total{replica="kube-apiserver-29"} 2
cascade_apiserver_restarts_total{replica="pinned"} 0
cascade_apiserver_up{replica="kube-apiserver-29"} 1
cascade_apiserver_up{replica="pinned"} 0
cascade_apiserver_memory_limit_bytes{replica="kube-apiserver-29"} 2147483648
`))
	require.Len(t, s.pods, 1)
	require.Len(t, e.exported, 2)

	// A pod deleted and re-created within the grace (a static pod's
	// mirror) continues its counts; after the grace it starts again.
	pod := apiserverPod("kube-apiserver-29", "2Gi", corev1.ContainerStatus{Ready: true, RestartCount: 1})
	s.delete(pod)
	clock.advance(time.Minute)
	s.update(pod)
	require.NoError(t, compareMetrics(e, `cascade_apiserver_restarts_total{replica="kube-apiserver-29"} 3
cascade_apiserver_restarts_total{replica="pinned"} 0
`, "cascade_apiserver_restarts_total"))
	s.delete(pod)
	clock.advance(cfg.ForgetAfter)
	require.NoError(t, compareMetrics(e, `cascade_apiserver_restarts_total{replica="pinned"} 0
`, "cascade_apiserver_restarts_total"))
	s.update(pod)
	require.NoError(t, compareMetrics(e, `cascade_apiserver_restarts_total{replica="kube-apiserver-29"} 1
cascade_apiserver_restarts_total{replica="pinned"} 0
`, "cascade_apiserver_restarts_total"))

	// With no grace, a deleted pod is forgotten at once; a live one never.
	e.cfg.ForgetAfter, s.forgetAfter = 0, 0
	require.NoError(t, compareMetrics(e, `cascade_apiserver_restarts_total{replica="kube-apiserver-29"} 1
cascade_apiserver_restarts_total{replica="pinned"} 0
`, "cascade_apiserver_restarts_total"))
	s.delete(pod)
	require.Empty(t, s.pods)
	require.NoError(t, compareMetrics(e, `cascade_apiserver_restarts_total{replica="pinned"} 0
`, "cascade_apiserver_restarts_total"))
	require.Len(t, e.exported, 1)
}
