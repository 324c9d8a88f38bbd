// Package deploy holds the Kubernetes manifests users apply; its test applies
// them to a real API server and proves the exporters work with exactly the
// permissions they grant, and no more.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/exporters/apimemory"
	"github.com/cascade-sre/cascade/exporters/gateway"
	"github.com/cascade-sre/cascade/exporters/nodelease"
	"github.com/cascade-sre/cascade/internal/testenv"
)

func TestExporterManifestLeastPrivilege(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	admin, err := cp.Clientset()
	require.NoError(t, err)
	ctx := t.Context()
	for _, ns := range []string{"kube-node-lease", "kube-system"} {
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			require.NoError(t, err)
		}
	}

	objs := decodeManifests(t, "exporter.yaml")
	for _, obj := range objs {
		require.NoError(t, create(ctx, admin, obj), "%T", obj)
	}

	// The exporter's own identity: a token for its service account.
	tok, err := admin.CoreV1().ServiceAccounts("cascade").CreateToken(ctx, "cascade-exporter",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	require.NoError(t, err)
	saCfg := &rest.Config{Host: cp.URL, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	sa, err := kubernetes.NewForConfig(saCfg)
	require.NoError(t, err)

	// What it needs works.
	_, err = admin.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-a", Labels: map[string]string{"component": "kube-apiserver"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.37.2"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	leases, err := nodelease.New(nodelease.DefaultConfig(), sa, logger)
	require.NoError(t, err)
	memCfg := apimemory.DefaultConfig()
	memCfg.Pods.Enabled = true
	memCfg.Endpoints = []apimemory.EndpointSpec{{Replica: "a", URL: cp.URL + "/metrics"}}
	memCfg.InsecureSkipVerify = true
	tokenFile := t.TempDir() + "/token"
	require.NoError(t, os.WriteFile(tokenFile, []byte(tok.Status.Token), 0o600))
	memCfg.BearerTokenFile = tokenFile
	mem, err := apimemory.New(memCfg, sa, logger)
	require.NoError(t, err)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = leases.Run(runCtx) }()
	go func() { _ = mem.Run(runCtx) }()

	require.Eventually(t, func() bool {
		return gauge(t, leases, "cascade_node_lease_watch_up") == 1 &&
			gauge(t, leases, "cascade_node_leases") == 1 && // one fresh lease
			gauge(t, mem, "cascade_apiserver_up") >= 1
	}, 60*time.Second, 200*time.Millisecond, "exporters did not work with the manifest's RBAC")

	// What it does not need is denied.
	_, err = sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "secrets: %v", err)
	_, err = sa.CoordinationV1().Leases("kube-system").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "leases outside kube-node-lease: %v", err)
	_, err = sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "pods outside kube-system: %v", err)
	_, err = sa.CoreV1().Nodes().Patch(ctx, "any", "application/merge-patch+json", []byte(`{}`), metav1.PatchOptions{})
	require.True(t, apierrors.IsForbidden(err), "nodes are read-only: %v", err)
	err = sa.CoordinationV1().Leases("kube-node-lease").Delete(ctx, "node-1", metav1.DeleteOptions{})
	require.True(t, apierrors.IsForbidden(err), "leases are read-only: %v", err)
}

// TestGatewaySidecarManifest applies the sidecar example to a real API server
// and checks that its nginx config logs in the format the exporter reads.
func TestGatewaySidecarManifest(t *testing.T) {
	cp := testenv.ControlPlaneForTest(t)
	admin, err := cp.Clientset()
	require.NoError(t, err)
	var conf string
	for _, obj := range decodeManifests(t, "gateway-sidecar.yaml") {
		require.NoError(t, create(t.Context(), admin, obj), "%T", obj)
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			conf = cm.Data["nginx.conf"]
		}
	}
	require.Contains(t, squash(conf), squash(gateway.NginxJSONLogFormat),
		"the sidecar's nginx must log in the exporter's cascade_json format")
	require.Contains(t, conf, "access_log /var/log/nginx/access.log cascade_json;")
}

// squash drops all white space, so indentation does not matter.
func squash(s string) string { return strings.Join(strings.Fields(s), "") }

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

func decodeManifests(t *testing.T, file string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []runtime.Object
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		require.NoError(t, err, "%s: %s", file, doc)
		objs = append(objs, obj)
	}
	require.NotEmpty(t, objs)
	return objs
}

func create(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.ClusterRole:
		_, err = c.RbacV1().ClusterRoles().Create(ctx, o, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	default:
		return errors.New("the test does not know this kind; add it")
	}
	return err
}
