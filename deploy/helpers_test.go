package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// prometheusOperator is the prometheus-operator release whose CRDs the
// ServiceMonitor and PrometheusRule objects are checked against.
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	return root
}

// helm finds the helm binary `make deps` installs; tests that use it need
// a real tool, so they run under testenv.RequireLong.
func helm(t *testing.T) string {
	t.Helper()
	testenv.RequireLong(t)
	p, err := testenv.ToolPath("helm")
	require.NoError(t, err)
	return p
}

// render runs `helm template` on the chart in the repository as release,
// in namespace, with args.
func render(t *testing.T, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := Template(helm(t), release, filepath.Join(repoRoot(t), ChartDir), append([]string{"--namespace", namespace}, args...)...)
	require.NoError(t, err)
	return decode(t, "helm template", out)
}

// manifest reads a file of deploy/.
func manifest(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return decode(t, file, b)
}

func decode(t *testing.T, source string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, yaml.Unmarshal(doc, &m), "%s: %s", source, doc)
		if m == nil {
			continue // only comments
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	require.NotEmpty(t, objs, source)
	return objs
}

// only keeps the objects of the given kinds.
func only(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if slices.Contains(kinds, o.GetKind()) {
			out = append(out, o)
		}
	}
	return out
}

// cluster is a real kube-apiserver and what the tests apply to it with.
type cluster struct {
	cp     *testenv.ControlPlane
	admin  kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cp := testenv.ControlPlaneForTest(t)
	cfg := cp.RESTConfig()
	admin, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	c := &cluster{cp: cp, admin: admin, dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(admin.Discovery()))}
	// The API server makes these itself, shortly after it is ready.
	for _, ns := range []string{"kube-node-lease", "kube-system"} {
		require.Eventually(t, func() bool {
			_, err := admin.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
			return err == nil
		}, 30*time.Second, 100*time.Millisecond, "namespace %s", ns)
	}
	return c
}

// apply applies objs with server-side apply and strict field validation, as
// `kubectl apply --server-side --validate=strict` does: namespaces and CRDs
// first, whatever order they come in.
func (c *cluster) apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	objs = slices.Clone(objs)
	first := func(o *unstructured.Unstructured) int {
		switch o.GetKind() {
		case "CustomResourceDefinition":
			return 0
		case "Namespace":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return first(a) - first(b) })
	for _, o := range objs {
		if err := c.apply1(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) apply1(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset() // a CRD applied since the last discovery
		mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return err
	}
	var client dynamic.ResourceInterface = c.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		client = c.dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = client.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: "cascade-deploy-test", Force: &force, FieldValidation: "Strict",
	})
	if err != nil {
		return errors.Join(errors.New(gvk.Kind+" "+o.GetNamespace()+"/"+o.GetName()), err)
	}
	return nil
}

var (
	crdOnce sync.Once
	crdDir  string
	crdErr  error
)

// operatorCRDs are the ServiceMonitor and PrometheusRule CRDs of the pinned
// prometheus-operator release, from the Go module proxy (or the module cache).
func operatorCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	crdOnce.Do(func() {
		cmd := exec.Command("go", "mod", "download", "-json", prometheusOperator)
		cmd.Dir = t.TempDir() // outside this module: nothing of its go.mod changes
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			crdErr = errors.Join(errors.New("go mod download "+prometheusOperator+": "+stderr.String()), err)
			return
		}
		var mod struct{ Dir string }
		crdErr = json.Unmarshal(out, &mod)
		crdDir = filepath.Join(mod.Dir, "example", "prometheus-operator-crd")
	})
	require.NoError(t, crdErr)
	var crds []*unstructured.Unstructured
	for _, kind := range []string{"servicemonitors", "prometheusrules"} {
		crds = append(crds, manifest(t, filepath.Join(crdDir, "monitoring.coreos.com_"+kind+".yaml"))...)
	}
	return crds
}

// installOperatorCRDs installs the CRDs and waits until they serve.
func (c *cluster) installOperatorCRDs(t *testing.T) {
	t.Helper()
	crds := operatorCRDs(t)
	require.NoError(t, c.apply(t.Context(), crds))
	crdResource := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, crd := range crds {
		require.Eventually(t, func() bool {
			got, err := c.dyn.Resource(crdResource).Get(t.Context(), crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		}, 30*time.Second, 100*time.Millisecond, "CRD %s not established", crd.GetName())
	}
	c.mapper.Reset()
}

// squash drops all white space, so indentation does not matter.
func squash(s string) string { return strings.Join(strings.Fields(s), "") }
