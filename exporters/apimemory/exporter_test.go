package apimemory

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testPodSource is a pod source fed by calling update directly, for tests
// of what the exporter makes of pod status; the informer is tested against
// a real API server in the integration tests.
func testPodSource() *podSource {
	return &podSource{
		container:   DefaultPodContainer,
		forgetAfter: DefaultForgetAfter,
		now:         time.Now,
		errors:      prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"}),
		pods:        map[string]*podState{},
		watchUp:     true,
	}
}

func apiserverPod(name string, limit string, status corev1.ContainerStatus) *corev1.Pod {
	status.Name = DefaultPodContainer
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DefaultPodNamespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: DefaultPodContainer,
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse(limit),
			}},
		}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{status}},
	}
}

func terminated(reason, id string, finished time.Time) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		Reason:      reason,
		ExitCode:    137,
		ContainerID: id,
		StartedAt:   metav1.NewTime(finished.Add(-time.Hour)),
		FinishedAt:  metav1.NewTime(finished),
	}
}

// TestReplicaFromThreeSources feeds one replica from a cgroup, an endpoint
// and a pod, and checks the precedence of gauges and the counting rule.
func TestReplicaFromThreeSources(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("process_resident_memory_bytes 9e+08\nprocess_start_time_seconds 1000\n"))
	}))
	defer srv.Close()

	cgroupDir := t.TempDir() + "/apiserver"
	copyDir(t, testdata(t, v2PodCgroup), cgroupDir) // oom_kill 1, no limit of its own
	cfg := DefaultConfig()
	cfg.Cgroups = []CgroupSpec{{Replica: "kube-apiserver-node-a", Dir: cgroupDir}}
	cfg.Endpoints = []EndpointSpec{{Replica: "kube-apiserver-node-a", URL: srv.URL + "/metrics"}}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	e.pods = testPodSource()
	poll := func() {
		pollCgroups(e)
		e.endpoints[0].poll(context.Background())
	}

	finished := time.Date(2026, 11, 24, 23, 48, 0, 0, time.UTC)
	oom := terminated(oomKilledReason, "containerd://aaa", finished)
	pod := apiserverPod("kube-apiserver-node-a", "3Gi", corev1.ContainerStatus{
		Ready: true, RestartCount: 1, LastTerminationState: corev1.ContainerState{Terminated: oom},
	})
	e.pods.update(pod)
	poll()
	// Working set from the cgroup, not the RSS; limit from the pod, since
	// the cgroup is unlimited; up from the probe; the one OOM kill seen by
	// both the cgroup and the pod counted once.
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="kube-apiserver-node-a"} 1410859008
cascade_apiserver_memory_limit_bytes{replica="kube-apiserver-node-a"} 3221225472
cascade_apiserver_oom_kills_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_restarts_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_up{replica="kube-apiserver-node-a"} 1
cascade_apiserver_pod_watch_up 1
`, append(memoryMetrics, "cascade_apiserver_pod_watch_up")...)
	requireLintClean(t, e)

	// The cgroup gone: the working set falls back to the RSS. The cgroup
	// limit now applies and wins over the pod's.
	writeFile(t, cgroupDir+"/memory.current", "garbage")
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="kube-apiserver-node-a"} 9e+08
cascade_apiserver_memory_limit_bytes{replica="kube-apiserver-node-a"} 3221225472
cascade_apiserver_oom_kills_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_restarts_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_up{replica="kube-apiserver-node-a"} 1
`)
	writeFile(t, cgroupDir+"/memory.current", "1612185600\n")
	writeFile(t, cgroupDir+"/memory.max", "2147483648\n")
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="kube-apiserver-node-a"} 1410859008
cascade_apiserver_memory_limit_bytes{replica="kube-apiserver-node-a"} 2147483648
cascade_apiserver_oom_kills_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_restarts_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_up{replica="kube-apiserver-node-a"} 1
`)

	// The pod watch broken: the pod's gauges are no longer current.
	e.pods.watchUp = false
	writeFile(t, cgroupDir+"/memory.max", "max\n")
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="kube-apiserver-node-a"} 1410859008
cascade_apiserver_oom_kills_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_restarts_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_up{replica="kube-apiserver-node-a"} 1
cascade_apiserver_pod_watch_up 0
`, append(memoryMetrics, "cascade_apiserver_pod_watch_up")...)

	// The pod deleted: the endpoint alone has seen no restart, yet the
	// replica's counter must not fall back to its 0.
	e.pods.delete(pod)
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="kube-apiserver-node-a"} 1410859008
cascade_apiserver_oom_kills_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_restarts_total{replica="kube-apiserver-node-a"} 1
cascade_apiserver_up{replica="kube-apiserver-node-a"} 1
`)
}

func TestPodStatus(t *testing.T) {
	s := testPodSource()
	e := &Exporter{
		cfg:          DefaultConfig(),
		pods:         s,
		now:          time.Now,
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_apiserver_source_errors_total"}, []string{"source"}),
		exported:     map[string]replicaCounters{},
	}
	t0 := time.Date(2026, 11, 24, 23, 48, 0, 0, time.UTC)

	steps := []struct {
		name   string
		status corev1.ContainerStatus
		want   string
	}{
		{"no status yet", corev1.ContainerStatus{}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 0
cascade_apiserver_restarts_total{replica="p"} 0
cascade_apiserver_up{replica="p"} 0
`},
		{"running", corev1.ContainerStatus{Ready: true}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 0
cascade_apiserver_restarts_total{replica="p"} 0
cascade_apiserver_up{replica="p"} 1
`},
		{"OOM killed, not restarted yet", corev1.ContainerStatus{
			State: corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://1", t0)},
		}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 1
cascade_apiserver_restarts_total{replica="p"} 0
cascade_apiserver_up{replica="p"} 0
`},
		{"restarted: the same kill moved to lastState", corev1.ContainerStatus{
			Ready: true, RestartCount: 1,
			LastTerminationState: corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://1", t0)},
		}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 1
cascade_apiserver_restarts_total{replica="p"} 1
cascade_apiserver_up{replica="p"} 1
`},
		{"killed again while the first is in lastState", corev1.ContainerStatus{
			RestartCount:         1,
			State:                corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://2", t0.Add(time.Minute))},
			LastTerminationState: corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://1", t0)},
		}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 2
cascade_apiserver_restarts_total{replica="p"} 1
cascade_apiserver_up{replica="p"} 0
`},
		{"delivered again (resync)", corev1.ContainerStatus{
			RestartCount:         1,
			State:                corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://2", t0.Add(time.Minute))},
			LastTerminationState: corev1.ContainerState{Terminated: terminated(oomKilledReason, "containerd://1", t0)},
		}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 2
cascade_apiserver_restarts_total{replica="p"} 1
cascade_apiserver_up{replica="p"} 0
`},
		{"a crash that is not an OOM", corev1.ContainerStatus{
			Ready: true, RestartCount: 3,
			LastTerminationState: corev1.ContainerState{Terminated: terminated("Error", "containerd://3", t0.Add(2*time.Minute))},
		}, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 2
cascade_apiserver_restarts_total{replica="p"} 3
cascade_apiserver_up{replica="p"} 1
`},
	}
	for _, step := range steps {
		s.update(apiserverPod("p", "2Gi", step.status))
		require.NoError(t, compareMetrics(e, step.want), step.name)
	}

	// Deleted and re-created under the same name, as a static pod's mirror
	// is: the series go while it is away and come back without falling.
	s.delete(apiserverPod("p", "2Gi", corev1.ContainerStatus{}))
	require.NoError(t, compareMetrics(e, ""))
	s.update(apiserverPod("p", "2Gi", corev1.ContainerStatus{Ready: true, RestartCount: 1}))
	require.NoError(t, compareMetrics(e, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 2
cascade_apiserver_restarts_total{replica="p"} 4
cascade_apiserver_up{replica="p"} 1
`))

	// A pod matching the selector without the API server container is not
	// a replica.
	other := apiserverPod("q", "1Gi", corev1.ContainerStatus{})
	other.Spec.Containers[0].Name = "sidecar"
	s.update(other)
	require.NoError(t, compareMetrics(e, `
cascade_apiserver_memory_limit_bytes{replica="p"} 2147483648
cascade_apiserver_oom_kills_total{replica="p"} 2
cascade_apiserver_restarts_total{replica="p"} 4
cascade_apiserver_up{replica="p"} 1
`))
}
