package gateway

import "bytes"

// RouteOther is the route of every request path outside the Kubernetes API
// grammar, and of new routes once Config.MaxRoutes is reached.
const RouteOther = "other"

// maxRouteSegments covers the deepest resource path,
// /apis/{group}/{version}/watch/namespaces/{namespace}/{resource}/{name}/{subresource};
// deeper paths are only valid below a proxy subresource.
const maxRouteSegments = 10

// routeMapper turns a request URI into a bounded route template following
// the Kubernetes API's URL grammar:
//
//	/api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version}   discovery
//	{prefix}/{resource}[/{name}[/{subresource}]]                  cluster-scoped, or across namespaces
//	{prefix}/namespaces/{namespace}/{resource}[/{name}[/{subresource}]]
//	/api/v1/namespaces[/{name}[/status|/finalize]]                 the Namespace objects
//	.../{name}/proxy/...                                           anything below proxy collapses
//	/version /healthz /livez /readyz [/{check}] /metrics[/slis]
//	/openapi/v2 /openapi/v3[/{path}] /.well-known/openid-configuration /openid/v1/jwks
//
// where {prefix} is /api/v1 or /apis/{group}/{version}. Watches, asked for
// with ?watch=true (or 1, t, True...) or the legacy /watch/ segment, are
// reported in the legacy form, {prefix}/watch/..., so that their long
// durations never mix with the GETs and LISTs of the same resource in the
// latency histogram, which has no method label.
//
// Group, version, resource, subresource and namespace stay literal only
// when they are in the sets of resources.go; names are always {name}.
// Anything else is RouteOther.
//
// A routeMapper keeps a buffer and is not safe for concurrent use.
type routeMapper struct {
	buf  []byte
	segs [maxRouteSegments][]byte
}

// route returns the template of uri, valid until the next call, and whether
// the request is a watch.
func (m *routeMapper) route(uri []byte) (tmpl []byte, watch bool) {
	path, query := uri, []byte(nil)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i+1:]
	}
	if i := bytes.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	if len(path) == 0 || path[0] != '/' {
		return m.other()
	}
	watch = watchQuery(query)
	// As the API server does, ignore leading and trailing slashes.
	path = bytes.Trim(path, "/")
	m.buf = m.buf[:0]
	if len(path) == 0 {
		return append(m.buf, '/'), false
	}
	n, overflow := 0, false
	for len(path) > 0 {
		if n == maxRouteSegments {
			overflow = true
			break
		}
		i := bytes.IndexByte(path, '/')
		seg := path
		if i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = nil
		}
		if len(seg) == 0 {
			return m.other()
		}
		m.segs[n] = seg
		n++
	}
	segs := m.segs[:n]

	switch string(segs[0]) {
	case "api":
		m.buf = append(m.buf, "/api"...)
		if len(segs) == 1 {
			return m.buf, false
		}
		m.appendVersion(segs[1])
		if len(segs) == 2 {
			return m.buf, false
		}
		return m.resourcePath(coreResources, true, segs[2:], overflow, watch)
	case "apis":
		m.buf = append(m.buf, "/apis"...)
		if len(segs) == 1 {
			return m.buf, false
		}
		resources := groupResources[string(segs[1])]
		m.buf = append(m.buf, '/')
		if resources != nil {
			m.buf = append(m.buf, segs[1]...)
		} else {
			m.buf = append(m.buf, "{group}"...)
		}
		if len(segs) == 2 {
			return m.buf, false
		}
		m.appendVersion(segs[2])
		if len(segs) == 3 {
			return m.buf, false
		}
		return m.resourcePath(resources, false, segs[3:], overflow, watch)
	}
	if overflow {
		return m.other()
	}
	switch string(segs[0]) {
	case "version":
		if len(segs) == 1 {
			return append(m.buf, "/version"...), false
		}
	case "healthz", "livez", "readyz":
		m.buf = append(m.buf, '/')
		m.buf = append(m.buf, segs[0]...)
		if len(segs) > 1 {
			m.buf = append(m.buf, "/{check}"...)
		}
		return m.buf, false
	case "metrics":
		switch {
		case len(segs) == 1:
			return append(m.buf, "/metrics"...), false
		case len(segs) == 2 && string(segs[1]) == "slis":
			return append(m.buf, "/metrics/slis"...), false
		}
	case "openapi":
		switch {
		case len(segs) == 2 && string(segs[1]) == "v2":
			return append(m.buf, "/openapi/v2"...), false
		case len(segs) == 2 && string(segs[1]) == "v3":
			return append(m.buf, "/openapi/v3"...), false
		case len(segs) > 2 && string(segs[1]) == "v3":
			return append(m.buf, "/openapi/v3/{path}"...), false
		}
	case ".well-known":
		if len(segs) == 2 && string(segs[1]) == "openid-configuration" {
			return append(m.buf, "/.well-known/openid-configuration"...), false
		}
	case "openid":
		if len(segs) == 3 && string(segs[1]) == "v1" && string(segs[2]) == "jwks" {
			return append(m.buf, "/openid/v1/jwks"...), false
		}
	}
	return m.other()
}

func (m *routeMapper) other() ([]byte, bool) {
	m.buf = append(m.buf[:0], RouteOther...)
	return m.buf, false
}

func (m *routeMapper) appendVersion(v []byte) {
	m.buf = append(m.buf, '/')
	if knownVersions[string(v)] {
		m.buf = append(m.buf, v...)
	} else {
		m.buf = append(m.buf, "{version}"...)
	}
}

// resourcePath maps what follows /api/v1 or /apis/{group}/{version}.
// resources is nil for a group not in groupResources.
func (m *routeMapper) resourcePath(resources map[string]bool, core bool, segs [][]byte, overflow, watch bool) ([]byte, bool) {
	if string(segs[0]) == "watch" {
		watch = true
		segs = segs[1:]
		if len(segs) == 0 {
			return m.other()
		}
	}
	if watch {
		m.buf = append(m.buf, "/watch"...)
	}
	if string(segs[0]) == "namespaces" && len(segs) > 1 {
		if len(segs) == 2 || len(segs) == 3 && namespaceSubresources[string(segs[2])] {
			// The Namespace object itself.
			if !core || overflow {
				return m.other()
			}
			m.buf = append(m.buf, "/namespaces/{name}"...)
			if len(segs) == 3 {
				m.buf = append(m.buf, '/')
				m.buf = append(m.buf, segs[2]...)
			}
			return m.buf, watch
		}
		m.buf = append(m.buf, "/namespaces/"...)
		if knownNamespaces[string(segs[1])] {
			m.buf = append(m.buf, segs[1]...)
		} else {
			m.buf = append(m.buf, "{namespace}"...)
		}
		segs = segs[2:]
	}
	m.buf = append(m.buf, '/')
	if resources[string(segs[0])] {
		m.buf = append(m.buf, segs[0]...)
	} else {
		m.buf = append(m.buf, "{resource}"...)
	}
	if len(segs) == 1 {
		return m.buf, watch
	}
	m.buf = append(m.buf, "/{name}"...)
	if len(segs) == 2 {
		return m.buf, watch
	}
	sub := segs[2]
	if string(sub) == "proxy" {
		// Everything below proxy is the proxied server's own path.
		return append(m.buf, "/proxy"...), watch
	}
	if len(segs) > 3 || overflow {
		return m.other()
	}
	m.buf = append(m.buf, '/')
	if knownSubresources[string(sub)] {
		m.buf = append(m.buf, sub...)
	} else {
		m.buf = append(m.buf, "{subresource}"...)
	}
	return m.buf, watch
}

// watchQuery reports whether a query string asks for a watch, reading the
// watch parameter as the API server does (strconv.ParseBool).
func watchQuery(q []byte) bool {
	for len(q) > 0 {
		param := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			param, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		v, ok := bytes.CutPrefix(param, []byte("watch="))
		if !ok {
			continue
		}
		switch string(v) {
		case "1", "t", "T", "true", "TRUE", "True":
			return true
		}
		return false
	}
	return false
}
