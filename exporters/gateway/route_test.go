package gateway

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		uri   string
		route string
		watch bool
	}{
		// Node lease renewals and node status, the incident's traffic.
		{"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-17", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}", false},
		{"/api/v1/nodes/node-17/status", "/api/v1/nodes/{name}/status", false},
		{"/api/v1/nodes/node-17", "/api/v1/nodes/{name}", false},
		{"/api/v1/nodes", "/api/v1/nodes", false},
		{"/api/v1/nodes?fieldSelector=metadata.name%3Dnode-17&limit=500", "/api/v1/nodes", false},
		// Namespaced resources, lists across namespaces, subresources.
		{"/api/v1/namespaces/team-a/pods", "/api/v1/namespaces/{namespace}/pods", false},
		{"/api/v1/namespaces/team-a/pods/web-0", "/api/v1/namespaces/{namespace}/pods/{name}", false},
		{"/api/v1/namespaces/team-a/pods/web-0/log?follow=true", "/api/v1/namespaces/{namespace}/pods/{name}/log", false},
		{"/api/v1/namespaces/team-a/pods/web-0/exec?command=sh", "/api/v1/namespaces/{namespace}/pods/{name}/exec", false},
		{"/api/v1/namespaces/team-a/pods/web-0/binding", "/api/v1/namespaces/{namespace}/pods/{name}/binding", false},
		{"/api/v1/namespaces/team-a/pods/web-0/eviction", "/api/v1/namespaces/{namespace}/pods/{name}/eviction", false},
		{"/api/v1/namespaces/team-a/pods/web-0/wat", "/api/v1/namespaces/{namespace}/pods/{name}/{subresource}", false},
		{"/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", "/api/v1/namespaces/kube-system/configmaps/{name}", false},
		{"/api/v1/pods?limit=500&resourceVersion=0", "/api/v1/pods", false},
		{"/apis/apps/v1/namespaces/team-a/deployments/web/scale", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", false},
		{"/apis/apps/v1/namespaces/team-a/deployments/web/status", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", false},
		{"/apis/apps/v1/deployments", "/apis/apps/v1/deployments", false},
		{"/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}", false},
		// The Namespace objects themselves.
		{"/api/v1/namespaces", "/api/v1/namespaces", false},
		{"/api/v1/namespaces/team-a", "/api/v1/namespaces/{name}", false},
		{"/api/v1/namespaces/team-a/finalize", "/api/v1/namespaces/{name}/finalize", false},
		{"/api/v1/namespaces/team-a/status", "/api/v1/namespaces/{name}/status", false},
		// Watches, by query and by the legacy path.
		{"/api/v1/pods?watch=true&resourceVersion=12", "/api/v1/watch/pods", true},
		{"/api/v1/namespaces/team-a/pods?allowWatchBookmarks=true&watch=1", "/api/v1/watch/namespaces/{namespace}/pods", true},
		{"/api/v1/pods?watch=false", "/api/v1/pods", false},
		{"/api/v1/pods?watch=yes", "/api/v1/pods", false},
		{"/api/v1/watch/namespaces/team-a/pods/web-0", "/api/v1/watch/namespaces/{namespace}/pods/{name}", true},
		{"/api/v1/watch/nodes", "/api/v1/watch/nodes", true},
		{"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?watch=True", "/apis/coordination.k8s.io/v1/watch/namespaces/kube-node-lease/leases", true},
		{"/api/v1/watch", RouteOther, false},
		// Proxy: whatever follows collapses.
		{"/api/v1/namespaces/team-a/services/web:80/proxy/a/b/c/d/e/f/g/h", "/api/v1/namespaces/{namespace}/services/{name}/proxy", false},
		{"/api/v1/nodes/node-1/proxy/metrics/cadvisor", "/api/v1/nodes/{name}/proxy", false},
		// Custom resources of any group share bounded templates.
		{"/apis/monitoring.coreos.com/v1/namespaces/mon/prometheuses/k8s", "/apis/{group}/v1/namespaces/{namespace}/{resource}/{name}", false},
		{"/apis/example.com/v1beta7/widgets", "/apis/{group}/{version}/{resource}", false},
		{"/apis/example.com/v1alpha1/namespaces/team-a/widgets/w/status", "/apis/{group}/v1alpha1/namespaces/{namespace}/{resource}/{name}/status", false},
		{"/apis/apps/v1/widgets", "/apis/apps/v1/{resource}", false},
		// Discovery and non-resource paths.
		{"/api", "/api", false},
		{"/api/v1", "/api/v1", false},
		{"/apis", "/apis", false},
		{"/apis/apps", "/apis/apps", false},
		{"/apis/example.com", "/apis/{group}", false},
		{"/apis/apps/v1", "/apis/apps/v1", false},
		{"/apis/apps/v1/", "/apis/apps/v1", false},
		{"/version", "/version", false},
		{"/version?timeout=32s", "/version", false},
		{"/healthz", "/healthz", false},
		{"/readyz?verbose", "/readyz", false},
		{"/livez/ping", "/livez/{check}", false},
		{"/healthz/poststarthook/rbac/bootstrap-roles", "/healthz/{check}", false},
		{"/metrics", "/metrics", false},
		{"/metrics/slis", "/metrics/slis", false},
		{"/openapi/v2", "/openapi/v2", false},
		{"/openapi/v3", "/openapi/v3", false},
		{"/openapi/v3/apis/apps/v1?hash=ABC", "/openapi/v3/{path}", false},
		{"/.well-known/openid-configuration", "/.well-known/openid-configuration", false},
		{"/openid/v1/jwks", "/openid/v1/jwks", false},
		{"/", "/", false},
		// Outside the grammar.
		{"", RouteOther, false},
		{"*", RouteOther, false},
		{"http://example.com/api/v1/pods", RouteOther, false},
		{"/favicon.ico", RouteOther, false},
		{"/api/v1//pods", RouteOther, false},
		{"/api/v1/namespaces/a/pods/b/log/extra", RouteOther, false},
		{"/apis/apps/v1/namespaces/a/deployments/b/c/d/e/f/g", RouteOther, false},
		{"/metrics/other", RouteOther, false},
		{"/version/x", RouteOther, false},
	} {
		var m routeMapper
		route, watch := m.route([]byte(tc.uri))
		require.Equal(t, tc.route, string(route), "uri %q", tc.uri)
		require.Equal(t, tc.watch, watch, "watch of %q", tc.uri)
	}
}

// TestRouteVocabularyBounded checks that every literal segment a route can
// carry comes from a fixed set, whatever the input: names and unknown
// segments never leak into a route.
func TestRouteVocabularyBounded(t *testing.T) {
	var m routeMapper
	for _, uri := range []string{
		"/api/v1/namespaces/secret-ns/pods/secret-pod",
		"/apis/secret.group.io/v9/namespaces/secret-ns/secretthings/secret-name/secretsub",
		"/apis/apps/v1/secretthings",
		"/healthz/secret-check",
		"/openapi/v3/apis/secret",
	} {
		route, _ := m.route([]byte(uri))
		require.NotContains(t, string(route), "secret", "uri %q leaked into route %q", uri, route)
		requireBoundedRoute(t, string(route))
	}
}

func BenchmarkRoute(b *testing.B) {
	uris := [][]byte{
		[]byte("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-17"),
		[]byte("/api/v1/nodes/node-17/status?timeout=10s"),
		[]byte("/api/v1/namespaces/team-a/pods?watch=true&resourceVersion=1234"),
	}
	var m routeMapper
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.route(uris[i%len(uris)])
	}
}
