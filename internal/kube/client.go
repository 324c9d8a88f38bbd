// Package kube builds the one Kubernetes client the exporters share, from a
// kubeconfig or, inside a pod, from the service account, and the list-watch
// their reflectors and informers run on.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says where the client's settings come from.
type Config struct {
	// Kubeconfig is a kubeconfig path. Empty: $KUBECONFIG, then
	// ~/.kube/config, then the in-cluster service account.
	Kubeconfig string
	// Context picks a kubeconfig context; empty means the current one.
	Context string
	// QPS and Burst bound the client's own request rate.
	QPS   float32
	Burst int
}

// scheme knows the two API groups the exporters read, core/v1 and
// coordination.k8s.io/v1, and nothing else. client-go's Clientset (and
// each of its typed clients, through client-go's scheme) registers every
// API group of Kubernetes: linking those types and their generated code
// made the exporter's executable about a third larger, and its resident
// pages with it.
var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(coordinationv1.AddToScheme(scheme))
}

// Client reads Leases, Nodes and Pods, all the exporters ask of the API.
type Client struct {
	core, coordination rest.Interface
}

// NewClient returns a client that talks protobuf, the cheapest encoding for
// thousands of Leases and Nodes.
func NewClient(c Config, userAgent string) (*Client, error) {
	restCfg, err := restConfig(c)
	if err != nil {
		return nil, err
	}
	restCfg = rest.CopyConfig(restCfg)
	restCfg.UserAgent = userAgent
	if c.QPS != 0 {
		restCfg.QPS = c.QPS
	}
	if c.Burst != 0 {
		restCfg.Burst = c.Burst
	}
	return NewClientForConfig(restCfg)
}

// NewClientForConfig returns a client for cfg, talking protobuf.
func NewClientForConfig(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	// One HTTP client (connections, rate limit) for both API groups.
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	core, err := groupClient(cfg, httpClient, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	coordination, err := groupClient(cfg, httpClient, "/apis", coordinationv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &Client{core: core, coordination: coordination}, nil
}

func groupClient(cfg *rest.Config, httpClient *http.Client, apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = apiPath
	cfg.GroupVersion = &gv
	c, err := rest.RESTClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
	}
	return c, nil
}

// Resource lists, watches and gets one kind of object (T, its list L) of
// one namespace, or of the cluster when namespace is empty. client-go's
// gentype does the same, but links client-go's fake clients with it, and
// their server-side apply and OpenAPI machinery: packages whose
// initialisers alone touched megabytes of the exporter's executable at
// start-up.
type Resource[T, L runtime.Object] struct {
	client    rest.Interface
	resource  string
	namespace string
	newObject func() T
	newList   func() L
}

// List lists the objects that opts selects.
func (r Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	list := r.newList()
	err := r.request(&opts, opts.TimeoutSeconds).Do(ctx).Into(list)
	return list, err
}

// Watch watches the objects that opts selects.
func (r Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.request(&opts, opts.TimeoutSeconds).Watch(ctx)
}

// Get gets the object called name.
func (r Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	object := r.newObject()
	err := r.request(&opts, nil).Name(name).Do(ctx).Into(object)
	return object, err
}

func (r Resource[T, L]) request(opts runtime.Object, timeoutSeconds *int64) *rest.Request {
	var timeout time.Duration
	if timeoutSeconds != nil {
		timeout = time.Duration(*timeoutSeconds) * time.Second
	}
	return r.client.Get().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		VersionedParams(opts, parameterCodec).
		Timeout(timeout)
}

// Leases are the Leases of namespace.
func (c *Client) Leases(namespace string) Resource[*coordinationv1.Lease, *coordinationv1.LeaseList] {
	return Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]{c.coordination, "leases", namespace,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} },
		func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} }}
}

// Nodes are the cluster's Nodes.
func (c *Client) Nodes() Resource[*corev1.Node, *corev1.NodeList] {
	return Resource[*corev1.Node, *corev1.NodeList]{c.core, "nodes", "",
		func() *corev1.Node { return &corev1.Node{} },
		func() *corev1.NodeList { return &corev1.NodeList{} }}
}

// Pods are the Pods of namespace.
func (c *Client) Pods(namespace string) Resource[*corev1.Pod, *corev1.PodList] {
	return Resource[*corev1.Pod, *corev1.PodList]{c.core, "pods", namespace,
		func() *corev1.Pod { return &corev1.Pod{} },
		func() *corev1.PodList { return &corev1.PodList{} }}
}

func restConfig(c Config) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if c.Kubeconfig != "" || !clientcmd.IsEmptyConfig(err) {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, inErr := rest.InClusterConfig()
	if inErr != nil {
		return nil, errors.New("no Kubernetes configuration: give --kubeconfig, set $KUBECONFIG, or run in a pod with a service account")
	}
	return cfg, nil
}

// ListThenWatch returns lw for a reflector that lists, then watches, and
// never uses client-go's watch-list (the initial state streamed as watch
// events). While a watch-list call fails, as it does against a dead API
// server, the reflector sleeps its backoff (up to 30 s and more) without
// looking at its context, so shutdown waited for it; a list and a watch
// retry within the context. The exporters' lists are their own anyway,
// paged and slimmed as they arrive.
func ListThenWatch(lw *cache.ListWatch) cache.ListerWatcher { return listThenWatch{lw} }

type listThenWatch struct{ *cache.ListWatch }

// IsWatchListSemanticsUnSupported tells client-go's reflector not to use
// watch-list.
func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }
