package apimemory

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// sampleOf returns the value e serves for name{replica}, with replica ""
// for a series without labels.
func sampleOf(t testing.TB, e *Exporter, name, replica string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(promCollector{e}))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "replica" {
					got = l.GetValue()
				}
			}
			if got != replica {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// eventually waits until cond holds, then returns; on timeout it fails with
// what cond last said.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expectSamples is a condition: every name{replica} has the value, or is
// absent where the value is absent.
func expectSamples(t testing.TB, e *Exporter, replica string, want map[string]*float64) func() error {
	return func() error {
		for name, v := range want {
			got, ok := sampleOf(t, e, name, replica)
			switch {
			case v == nil && ok:
				return fmt.Errorf("%s{replica=%q} = %v, want absent", name, replica, got)
			case v != nil && !ok:
				return fmt.Errorf("%s{replica=%q} absent, want %v", name, replica, *v)
			case v != nil && got != *v:
				return fmt.Errorf("%s{replica=%q} = %v, want %v", name, replica, got, *v)
			}
		}
		return nil
	}
}

func value(v float64) *float64 { return &v }

var absent *float64

func runExporter(t testing.TB, e *Exporter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestAPIServerMetricsEndpoint probes a real kube-apiserver, kills it as
// the OOM killer would, and starts it again.
func TestAPIServerMetricsEndpoint(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, cp.Token+"\n")

	cfg := DefaultConfig()
	cfg.BearerTokenFile = tokenFile
	// The serving certificate the API server made itself; the file holds
	// its signing CA too.
	cfg.CAFile = filepath.Join(cp.Dir, "certs", "apiserver.crt")
	cfg.PollInterval, cfg.Timeout = time.Second, time.Second
	spec, err := ParseEndpointSpec("apiserver=" + cp.URL)
	require.NoError(t, err)
	cfg.Endpoints = []EndpointSpec{spec}
	// The API server's real cgroup, as the kernel of this machine has it.
	cfg.Cgroups = []CgroupSpec{{Replica: "apiserver-cgroup", PID: cp.APIServerPid()}}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	runExporter(t, e)

	const (
		up         = "cascade_apiserver_up"
		workingSet = "cascade_apiserver_memory_working_set_bytes"
		restarts   = "cascade_apiserver_restarts_total"
	)
	eventually(t, 30*time.Second, expectSamples(t, e, "apiserver", map[string]*float64{up: value(1), restarts: value(0)}))
	rss, ok := sampleOf(t, e, workingSet, "apiserver")
	require.True(t, ok)
	require.Greater(t, rss, 50e6, "an API server holds more than 50 MB")
	cgroupWorkingSet, ok := sampleOf(t, e, workingSet, "apiserver-cgroup")
	require.True(t, ok, "the cgroup of pid %d could not be read", cp.APIServerPid())
	require.Greater(t, cgroupWorkingSet, 0.0)
	requireLintClean(t, e)

	cp.KillAPIServer()
	eventually(t, 30*time.Second, expectSamples(t, e, "apiserver", map[string]*float64{up: value(0), workingSet: absent, restarts: value(0)}))
	// The killed process is gone, and its cgroup with it for this source.
	eventually(t, 30*time.Second, expectSamples(t, e, "apiserver-cgroup", map[string]*float64{workingSet: absent}))
	for _, kind := range []string{kindMetrics, kindCgroup} {
		require.GreaterOrEqual(t, testutil.ToFloat64(e.sourceErrors.WithLabelValues(kind)), 1.0, "errors of %s", kind)
	}

	require.NoError(t, cp.StartAPIServer())
	eventually(t, 30*time.Second, expectSamples(t, e, "apiserver", map[string]*float64{up: value(1), restarts: value(1)}))
	_, ok = sampleOf(t, e, workingSet, "apiserver")
	require.True(t, ok)
}

// TestAPIServerPods watches API server pods whose status the test writes,
// as no kubelet runs.
func TestAPIServerPods(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	kube, err := cp.Clientset()
	require.NoError(t, err)
	ctx := context.Background()
	pods := kube.CoreV1().Pods(DefaultPodNamespace)

	// No controller manager runs to create the default service account
	// that pods are admitted with.
	_, err = kube.CoreV1().ServiceAccounts(DefaultPodNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	for _, p := range []struct {
		name, component, limit string
	}{
		{"kube-apiserver-node-a", "kube-apiserver", "2Gi"},
		{"kube-apiserver-node-b", "kube-apiserver", "3Gi"},
		{"etcd-node-a", "etcd", "1Gi"},
	} {
		_, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{"component": p.component, "tier": "control-plane"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name:  p.component,
				Image: "registry.k8s.io/" + p.component + ":v1.37.2",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(p.limit)},
				},
			}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	cfg := DefaultConfig()
	cfg.Pods.Enabled = true
	cfg.ForgetAfter = 2 * time.Second
	e, err := New(cfg, kube, nil)
	require.NoError(t, err)
	runExporter(t, e)

	const (
		up       = "cascade_apiserver_up"
		limit    = "cascade_apiserver_memory_limit_bytes"
		restarts = "cascade_apiserver_restarts_total"
		oomKills = "cascade_apiserver_oom_kills_total"
	)
	// Pending, no container status yet.
	eventually(t, 30*time.Second, expectSamples(t, e, "kube-apiserver-node-b", map[string]*float64{
		up: value(0), limit: value(3 << 30), restarts: value(0), oomKills: value(0)}))
	eventually(t, 5*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(0), limit: value(2 << 30), restarts: value(0), oomKills: value(0)}))
	eventually(t, 5*time.Second, expectSamples(t, e, "etcd-node-a", map[string]*float64{up: absent, limit: absent}))
	watchUp, _ := sampleOf(t, e, "cascade_apiserver_pod_watch_up", "")
	require.Equal(t, 1.0, watchUp)

	started := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	setStatus(t, kube, "kube-apiserver-node-a", func(cs *corev1.ContainerStatus) {
		cs.Ready = true
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}
	})
	eventually(t, 10*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(1), limit: value(2 << 30), restarts: value(0), oomKills: value(0)}))

	// OOM killed and restarted.
	killed := metav1.NewTime(time.Now().Truncate(time.Second))
	setStatus(t, kube, "kube-apiserver-node-a", func(cs *corev1.ContainerStatus) {
		cs.RestartCount = 1
		cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 137, Reason: "OOMKilled", StartedAt: started, FinishedAt: killed,
			ContainerID: "containerd://0a1b2c",
		}}
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: killed}}
		cs.ContainerID = "containerd://3d4e5f"
	})
	eventually(t, 10*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(1), limit: value(2 << 30), restarts: value(1), oomKills: value(1)}))

	// Unrelated updates deliver the same termination again.
	for _, ready := range []bool{false, true, false} {
		setStatus(t, kube, "kube-apiserver-node-a", func(cs *corev1.ContainerStatus) { cs.Ready = ready })
	}
	eventually(t, 10*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(0), restarts: value(1), oomKills: value(1)}))

	// The API server goes away: the pods' status is no longer current, the
	// counts stay. When it is back, the relist delivers every pod again,
	// still without counting the kill twice.
	cp.KillAPIServer()
	eventually(t, 30*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: absent, limit: absent, restarts: value(1), oomKills: value(1)}))
	watchUp, _ = sampleOf(t, e, "cascade_apiserver_pod_watch_up", "")
	require.Equal(t, 0.0, watchUp)
	require.NoError(t, cp.StartAPIServer())
	eventually(t, 60*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(0), limit: value(2 << 30), restarts: value(1), oomKills: value(1)}))
	setStatus(t, kube, "kube-apiserver-node-a", func(cs *corev1.ContainerStatus) { cs.Ready = true })
	eventually(t, 10*time.Second, expectSamples(t, e, "kube-apiserver-node-a", map[string]*float64{
		up: value(1), restarts: value(1), oomKills: value(1)}))
	requireLintClean(t, e)

	// A pod deleted (a rollout): its series go at once, and what the
	// exporter kept of it after ForgetAfter.
	require.NoError(t, pods.Delete(ctx, "kube-apiserver-node-b", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	eventually(t, 10*time.Second, expectSamples(t, e, "kube-apiserver-node-b", map[string]*float64{
		up: absent, limit: absent, restarts: absent, oomKills: absent}))
	eventually(t, 10*time.Second, func() error {
		sampleOf(t, e, up, "kube-apiserver-node-a") // a scrape, which forgets
		e.mu.Lock()
		_, exported := e.exported["kube-apiserver-node-b"]
		e.mu.Unlock()
		e.pods.mu.Lock()
		_, watched := e.pods.pods["kube-apiserver-node-b"]
		e.pods.mu.Unlock()
		if exported || watched {
			return fmt.Errorf("kube-apiserver-node-b still kept: exported %v, in the pod map %v", exported, watched)
		}
		return nil
	})
}

// setStatus changes the kube-apiserver container's status of a pod the way
// a kubelet would, through the status subresource.
func setStatus(t testing.TB, kube kubernetes.Interface, name string, change func(*corev1.ContainerStatus)) {
	t.Helper()
	ctx := context.Background()
	pod, err := kube.CoreV1().Pods(DefaultPodNamespace).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	if len(pod.Status.ContainerStatuses) == 0 {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: DefaultPodContainer, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:0f1e2d",
		}}
	}
	pod.Status.Phase = corev1.PodRunning
	change(&pod.Status.ContainerStatuses[0])
	_, err = kube.CoreV1().Pods(DefaultPodNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
}
