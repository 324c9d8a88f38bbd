package gateway

// The bounded vocabularies of route templates. A path segment appears
// literally in a route only when it is in one of these sets; anything else
// becomes a placeholder ({group}, {version}, {resource}, {subresource},
// {namespace}, {name}) or the whole route becomes "other". That keeps the
// number of routes finite whatever clients send: custom resources of any
// group share /apis/{group}/{version}/... templates.
//
// The sets are the built-in API of Kubernetes 1.37 plus metrics.k8s.io, the
// aggregated API nearly every cluster serves. A resource a future release
// adds shows as {resource} until it is added here.

// coreResources are the resources of the core group, /api/v1.
var coreResources = setOf(
	"bindings", "componentstatuses", "configmaps", "endpoints", "events",
	"limitranges", "namespaces", "nodes", "persistentvolumeclaims",
	"persistentvolumes", "pods", "podtemplates", "replicationcontrollers",
	"resourcequotas", "secrets", "serviceaccounts", "services",
)

// groupResources maps every known API group to its resources.
var groupResources = map[string]map[string]bool{
	"admissionregistration.k8s.io": setOf("mutatingwebhookconfigurations", "validatingwebhookconfigurations",
		"validatingadmissionpolicies", "validatingadmissionpolicybindings",
		"mutatingadmissionpolicies", "mutatingadmissionpolicybindings"),
	"apiextensions.k8s.io":         setOf("customresourcedefinitions"),
	"apiregistration.k8s.io":       setOf("apiservices"),
	"apps":                         setOf("controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"),
	"authentication.k8s.io":        setOf("tokenreviews", "selfsubjectreviews"),
	"authorization.k8s.io":         setOf("localsubjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"),
	"autoscaling":                  setOf("horizontalpodautoscalers"),
	"batch":                        setOf("cronjobs", "jobs"),
	"certificates.k8s.io":          setOf("certificatesigningrequests", "clustertrustbundles", "podcertificaterequests"),
	"coordination.k8s.io":          setOf("leases", "leasecandidates"),
	"discovery.k8s.io":             setOf("endpointslices"),
	"events.k8s.io":                setOf("events"),
	"flowcontrol.apiserver.k8s.io": setOf("flowschemas", "prioritylevelconfigurations"),
	"internal.apiserver.k8s.io":    setOf("storageversions"),
	"networking.k8s.io":            setOf("ingressclasses", "ingresses", "networkpolicies", "ipaddresses", "servicecidrs"),
	"node.k8s.io":                  setOf("runtimeclasses"),
	"policy":                       setOf("poddisruptionbudgets"),
	"rbac.authorization.k8s.io":    setOf("clusterrolebindings", "clusterroles", "rolebindings", "roles"),
	"resource.k8s.io":              setOf("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices", "devicetaintrules"),
	"scheduling.k8s.io":            setOf("priorityclasses", "workloads"),
	"storage.k8s.io":               setOf("csidrivers", "csinodes", "csistoragecapacities", "storageclasses", "volumeattachments", "volumeattributesclasses"),
	"storagemigration.k8s.io":      setOf("storageversionmigrations"),
	"metrics.k8s.io":               setOf("nodes", "pods"),
}

// knownVersions are API versions kept literally, in any group.
var knownVersions = setOf(
	"v1", "v2", "v3",
	"v1alpha1", "v1alpha2", "v1alpha3", "v1beta1", "v1beta2", "v1beta3",
	"v2alpha1", "v2beta1", "v2beta2",
)

// knownSubresources are subresources kept literally, on any resource.
var knownSubresources = setOf(
	"status", "scale", "log", "exec", "attach", "portforward", "proxy",
	"binding", "eviction", "ephemeralcontainers", "resize", "approval",
	"token", "finalize",
)

// knownNamespaces are the namespaces the API server creates itself. They
// stay literal in routes so that node lease renewals
// (/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name})
// and control-plane traffic stand apart; every other namespace is
// {namespace}.
var knownNamespaces = setOf("default", "kube-system", "kube-public", "kube-node-lease")

// namespaceSubresources follow /api/v1/namespaces/{name}/ and are
// subresources of the Namespace, not namespaced resources, as in the API
// server's own request parsing.
var namespaceSubresources = setOf("status", "finalize")

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
