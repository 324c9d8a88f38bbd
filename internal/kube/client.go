// Package kube builds the one Kubernetes client the exporters share, from a
// kubeconfig or, inside a pod, from the service account, and the list-watch
// their informers run on.
package kube

import (
	"errors"
	"fmt"

	"k8s.io/client-go/kubernetes"
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

// NewClient returns a clientset that talks protobuf, the cheapest encoding
// for thousands of Leases and Nodes.
func NewClient(c Config, userAgent string) (kubernetes.Interface, *rest.Config, error) {
	restCfg, err := restConfig(c)
	if err != nil {
		return nil, nil, err
	}
	restCfg = rest.CopyConfig(restCfg)
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	restCfg.UserAgent = userAgent
	if c.QPS != 0 {
		restCfg.QPS = c.QPS
	}
	if c.Burst != 0 {
		restCfg.Burst = c.Burst
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, restCfg, nil
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

// ListThenWatch returns lw for an informer that lists, then watches, and
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
