package deploy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/exporters/apimemory"
	"github.com/cascade-sre/cascade/exporters/gateway"
	"github.com/cascade-sre/cascade/exporters/nodelease"
)

// everythingOn renders the chart with every part on and every list and map
// of its values filled, the most a user can ask of it.
var everythingOn = []string{
	"--set", "createNamespace=true,cluster=prod-eu-1,region=eu-west",
	"--set", "gatewayExample.enabled=true,gatewayExample.lokiURL=http://loki:3100/loki/api/v1/push",
	"--set", "run.enabled=true,run.lokiURL=http://loki:3100/loki/api/v1/push,run.externalURL=https://cascade.example.com,run.storage.storageClassName=fast",
	"--set", "serviceMonitor.labels.release=kube-prometheus-stack,prometheusRule.labels.release=kube-prometheus-stack",
	"--set", "dashboards.annotations.grafana_folder=Cascade,image.digest=sha256:82bb4c21ecd965a7acde81f907ac567592753ebecbeff35714f05c46c61b7b59",
	"--set", "exporter.nodelease.perNodeSeries=false,serviceAccount.annotations.example\\.com/role=cascade",
	"--set-json", `exporter.apimemory.endpoints=["service=https://kubernetes.default.svc/metrics"]`,
	"--set-json", `exporter.extraArgs=["--log.format=json", "--kube.context=ops: eu #1"]`,
	"--set-json", `podSecurityContext={"runAsNonRoot":true,"runAsUser":65532,"runAsGroup":65532,"fsGroup":65532}`,
	"--set-json", `securityContext={"runAsUser":65533,"readOnlyRootFilesystem":true}`,
	"--set-json", `exporter.podAnnotations={"example.com/team":"sre"}`,
	"--set-json", `exporter.nodeSelector={"kubernetes.io/os":"linux"},run.nodeSelector={"kubernetes.io/os":"linux"}`,
	"--set-json", `exporter.tolerations=[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]`,
	"--set-json", `imagePullSecrets=[{"name":"regcred"}]`,
	"--set-json", `serviceMonitor.relabelings=[{"action":"replace","targetLabel":"team","replacement":"sre"}]`,
	"--set-json", `run.alertmanagers=["alertmanager-operated.monitoring:9093"]`,
	"--set-json", `run.remoteWrite=[{"url":"http://mimir:8080/api/v1/push","basic_auth":{"username":"cascade","password_file":"/etc/cascade/secrets/password"}}]`,
	"--set-json", `run.extraScrapeConfigs=[{"job_name":"api-gateway","static_configs":[{"targets":["api-gateway-0:9847"]}]}]`,
	"--set-json", `run.extraVolumes=[{"name":"secrets","secret":{"secretName":"cascade-remote-write"}}]`,
	"--set-json", `run.extraVolumeMounts=[{"name":"secrets","mountPath":"/etc/cascade/secrets","readOnly":true}]`,
}

// TestManifestsAcceptedByAPIServer applies every plain manifest of deploy/
// and the chart with every part on to a real API server holding
// prometheus-operator's CRDs, with strict validation: the ServiceMonitors
// and PrometheusRules are checked against the CRDs' schemas by the server.
func TestManifestsAcceptedByAPIServer(t *testing.T) {
	c := newCluster(t)
	c.installOperatorCRDs(t)
	ctx := t.Context()
	for _, m := range PlainManifests {
		require.NoError(t, c.apply(ctx, manifest(t, m.File)), m.File)
	}

	objs := render(t, "everything", "cascade-everything", everythingOn...)
	require.NoError(t, c.apply(ctx, objs))
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	require.Equal(t, map[string]int{
		"Namespace": 1, "ServiceAccount": 2, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 2, "RoleBinding": 2,
		// ConfigMaps: cascade run's, the gateway example's, one per dashboard.
		"Service": 3, "Deployment": 2, "StatefulSet": 1, "ConfigMap": 2 + len(readGlob(t, filepath.Join(repoRoot(t), "dashboards", "json", "*.json"))), "ServiceMonitor": 3,
		"PrometheusRule": len(ruleFiles(t)),
	}, kinds, "every part of the chart is rendered and applied")

	// The schemas are enforced, not only the objects' shape: what the CRDs
	// refuse is refused.
	sm := only(objs, "ServiceMonitor")[0].DeepCopy()
	require.NoError(t, unstructured.SetNestedSlice(sm.Object, []any{map[string]any{"port": "metrics", "interval": "15 seconds"}}, "spec", "endpoints"))
	require.ErrorContains(t, c.apply(ctx, []*unstructured.Unstructured{sm}), "spec.endpoints[0].interval")
	pr := only(objs, "PrometheusRule")[0].DeepCopy()
	require.NoError(t, unstructured.SetNestedSlice(pr.Object, []any{map[string]any{"name": "g", "rules": []any{map[string]any{"alert": "A", "expr": "up", "for": "soon"}}}}, "spec", "groups"))
	require.ErrorContains(t, c.apply(ctx, []*unstructured.Unstructured{pr}), "spec.groups[0].rules[0].for")
	require.NoError(t, unstructured.SetNestedSlice(pr.Object, []any{map[string]any{"name": "g", "rules": []any{map[string]any{"alert": "A", "expr": "up", "severity": "page"}}}}, "spec", "groups"))
	require.ErrorContains(t, c.apply(ctx, []*unstructured.Unstructured{pr}), "severity: field not declared in schema", "fields the CRD does not know are refused")
}

// TestExporterLeastPrivilege applies the chart's exporter with its RBAC to a
// real API server and runs the exporters as its service account, configured
// from the Deployment's own arguments: they work, and the account can do
// nothing else. Three releases: the defaults, with an API server endpoint
// (GET on /metrics), and the lease exporter alone.
func TestExporterLeastPrivilege(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	_, err := c.admin.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-a", Labels: map[string]string{"component": "kube-apiserver"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	exporterOnly := []string{"--set", "createNamespace=true",
		"--show-only", "templates/namespace.yaml", "--show-only", "templates/exporter-rbac.yaml", "--show-only", "templates/exporter.yaml"}
	for _, tc := range []struct {
		name, release, namespace string
		set                      []string
		leases, pods, metrics    bool // what the exporters must be able to do
	}{
		{name: "defaults", release: "cascade", namespace: "cascade", leases: true, pods: true},
		{name: "endpoint", release: "endpoint", namespace: "cascade-endpoint",
			set:    []string{"--set-json", `exporter.apimemory.endpoints=["a=` + c.cp.URL + `/metrics"]`},
			leases: true, pods: true, metrics: true},
		{name: "leases only", release: "leases", namespace: "cascade-leases",
			set:    []string{"--set", "exporter.apimemory.enabled=false"},
			leases: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.release, tc.namespace, append(exporterOnly, tc.set...)...)
			require.NoError(t, c.apply(ctx, objs))
			sa, token := c.serviceAccountClient(t, only(objs, "ServiceAccount")[0])
			args := containerArgs(t, only(objs, "Deployment")[0])
			leases, mem := exportersFromArgs(t, args, sa, token)
			require.Equal(t, tc.leases, leases != nil, "lease exporter on: %v", args)
			require.Equal(t, tc.pods || tc.metrics, mem != nil, "memory exporter on: %v", args)

			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			if leases != nil {
				go func() { _ = leases.Run(runCtx) }()
			}
			if mem != nil {
				go func() { _ = mem.Run(runCtx) }()
			}
			require.Eventually(t, func() bool {
				ok := true
				if leases != nil {
					ok = ok && gauge(t, leases, "cascade_node_lease_watch_up") == 1 &&
						gauge(t, leases, "cascade_node_leases") == 1 // the one fresh lease
				}
				if tc.pods {
					ok = ok && gauge(t, mem, "cascade_apiserver_pod_watch_up") == 1
				}
				if tc.metrics {
					ok = ok && gauge(t, mem, "cascade_apiserver_up") == 1
				}
				return ok
			}, 60*time.Second, 200*time.Millisecond, "the exporters did not work with the chart's RBAC")

			// What it does not need is denied.
			forbidden := func(what string, err error) {
				t.Helper()
				require.True(t, apierrors.IsForbidden(err), "%s must be forbidden: %v", what, err)
			}
			_, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			forbidden("secrets", err)
			_, err = sa.CoordinationV1().Leases("kube-system").List(ctx, metav1.ListOptions{})
			forbidden("leases outside kube-node-lease", err)
			err = sa.CoordinationV1().Leases("kube-node-lease").Delete(ctx, "node-1", metav1.DeleteOptions{})
			forbidden("deleting a lease", err)
			_, err = sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			forbidden("pods outside kube-system", err)
			_, err = sa.CoreV1().Nodes().Patch(ctx, "any", "application/merge-patch+json", []byte(`{}`), metav1.PatchOptions{})
			forbidden("patching nodes", err)
			if !tc.pods {
				_, err = sa.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
				forbidden("pods without the pod watch", err)
			}
			if !tc.metrics {
				err = sa.Discovery().RESTClient().Get().AbsPath("/metrics").Do(ctx).Error()
				forbidden("/metrics without an endpoint", err)
			}
		})
	}
}

// serviceAccountClient is a client with a token of the service account.
func (c *cluster) serviceAccountClient(t *testing.T, sa *unstructured.Unstructured) (kubernetes.Interface, string) {
	t.Helper()
	tok, err := c.admin.CoreV1().ServiceAccounts(sa.GetNamespace()).CreateToken(t.Context(), sa.GetName(),
		&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: c.cp.URL, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	require.NoError(t, err)
	return client, tok.Status.Token
}

func containerArgs(t *testing.T, deployment *unstructured.Unstructured) []string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	var args []string
	for _, a := range containers[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	require.Equal(t, "exporter", args[0])
	return args[1:]
}

// exportersFromArgs configures the lease and memory exporters as `cascade
// exporter` would from args, with the pod's service-account files replaced
// by the test's token (the test's API server certificate is self-signed).
func exportersFromArgs(t *testing.T, args []string, client kubernetes.Interface, token string) (*nodelease.Exporter, *apimemory.Exporter) {
	t.Helper()
	leasesOn, memOn := true, true
	leaseCfg, memCfg := nodelease.DefaultConfig(), apimemory.DefaultConfig()
	memCfg.Pods.Enabled = true // --apimemory.pods is on unless turned off
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch name {
		case "no-exporter.nodelease":
			leasesOn = false
		case "no-exporter.apimemory":
			memOn = false
		case "nodelease.namespace":
			leaseCfg.Namespace = value
		case "no-nodelease.per-node-series":
			leaseCfg.PerNodeSeries = false
		case "apimemory.pods":
			memCfg.Pods.Enabled = true
		case "no-apimemory.pods":
			memCfg.Pods.Enabled = false
		case "apimemory.pods.namespace":
			memCfg.Pods.Namespace = value
		case "apimemory.pods.selector":
			memCfg.Pods.LabelSelector = value
		case "apimemory.endpoint":
			spec, err := apimemory.ParseEndpointSpec(value)
			require.NoError(t, err)
			memCfg.Endpoints = append(memCfg.Endpoints, spec)
		case "apimemory.bearer-token-file":
			require.Equal(t, "/var/run/secrets/kubernetes.io/serviceaccount/token", value)
			memCfg.BearerTokenFile = t.TempDir() + "/token"
			require.NoError(t, os.WriteFile(memCfg.BearerTokenFile, []byte(token), 0o600))
		case "apimemory.ca-file":
			memCfg.InsecureSkipVerify = true
		case "web.listen-address":
		default:
			t.Fatalf("the test does not know the exporter flag %s; teach it", a)
		}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var leases *nodelease.Exporter
	var mem *apimemory.Exporter
	var err error
	if leasesOn {
		leases, err = nodelease.New(leaseCfg, client, logger)
		require.NoError(t, err)
	}
	if memOn {
		mem, err = apimemory.New(memCfg, client, logger)
		require.NoError(t, err)
	}
	return leases, mem
}

// TestGatewaySidecarManifest checks that the sidecar example's nginx logs
// in the format the exporter reads.
func TestGatewaySidecarManifest(t *testing.T) {
	var conf string
	for _, cm := range only(manifest(t, "gateway-sidecar.yaml"), "ConfigMap") {
		conf, _, _ = unstructured.NestedString(cm.Object, "data", "nginx.conf")
	}
	require.Contains(t, squash(conf), squash(gateway.NginxJSONLogFormat),
		"the sidecar's nginx must log in the exporter's cascade_json format")
	require.Contains(t, conf, "access_log /var/log/nginx/access.log cascade_json;")
}

// gauge sums every sample of the named metric in one collection.
func gauge(t *testing.T, c interface {
	Describe(chan<- *prometheus.Desc)
	Update(chan<- prometheus.Metric) error
}, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(updater{c})
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

type updater struct {
	c interface {
		Describe(chan<- *prometheus.Desc)
		Update(chan<- prometheus.Metric) error
	}
}

func (u updater) Describe(ch chan<- *prometheus.Desc) { u.c.Describe(ch) }
func (u updater) Collect(ch chan<- prometheus.Metric) { _ = u.c.Update(ch) }
