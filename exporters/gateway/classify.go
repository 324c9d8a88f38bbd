package gateway

import (
	"bytes"
	"strconv"

	"github.com/cascade-sre/cascade/internal/contract"
)

type clientClass uint8

const (
	classKubelet clientClass = iota
	classController
	classKubectl
	classOther
	numClasses
)

// classNames are the values of the client label (see the contract).
var classNames = [numClasses]string{contract.ClientKubelet, contract.ClientController, contract.ClientKubectl, contract.ClientOther}

// controllerProducts are user agent products of control-plane components
// that reconcile state, matched exactly.
var controllerProducts = setOf(
	"kube-controller-manager", "kube-scheduler", "cloud-controller-manager",
)

// controllerWords mark an automation product by name: most operators and
// controllers carry one of them (argocd-application-controller,
// kustomize-controller, cluster-autoscaler, PrometheusOperator, ...).
var controllerWords = [][]byte{
	[]byte("controller"), []byte("operator"), []byte("scheduler"), []byte("autoscaler"),
}

// classifyAgent maps a User-Agent header to a client class:
//
//   - kubelet: the product is "kubelet" (kubelet/v1.37.2 (linux/amd64) kubernetes/abc123).
//   - kubectl: the product is "kubectl" (or "kubectl.exe" on Windows).
//   - controller: a control-plane component (kube-controller-manager,
//     kube-scheduler, cloud-controller-manager); a product whose name holds
//     controller, operator, scheduler or autoscaler (any case); or any
//     program with client-go's default user agent,
//     "NAME/VERSION (OS/ARCH) kubernetes/COMMIT", which is what operators
//     and other in-cluster automation built on client-go send unless they
//     set their own.
//   - other: everything else, including browsers, curl, empty agents and
//     clients of other languages' libraries.
func classifyAgent(ua []byte) clientClass {
	product := ua
	if i := bytes.IndexAny(ua, "/ "); i >= 0 {
		product = ua[:i]
	}
	switch string(product) {
	case "kubelet":
		return classKubelet
	case "kubectl", "kubectl.exe":
		return classKubectl
	}
	if len(product) == 0 {
		return classOther
	}
	if controllerProducts[string(product)] {
		return classController
	}
	for _, w := range controllerWords {
		if containsFold(product, w) {
			return classController
		}
	}
	if isClientGoDefault(ua) {
		return classController
	}
	return classOther
}

// isClientGoDefault reports the shape client-go gives a program's user
// agent by default: "NAME/VERSION (OS/ARCH) kubernetes/COMMIT", optionally
// followed by "/suffix".
func isClientGoDefault(ua []byte) bool {
	slash := bytes.IndexByte(ua, '/')
	open := bytes.Index(ua, []byte(" ("))
	if slash <= 0 || open < slash {
		return false
	}
	rest := ua[open+2:]
	closeParen := bytes.IndexByte(rest, ')')
	if closeParen < 0 || bytes.IndexByte(rest[:closeParen], '/') < 0 {
		return false
	}
	return bytes.HasPrefix(rest[closeParen+1:], []byte(" kubernetes/"))
}

// containsFold is bytes.Contains ignoring ASCII case, for short words.
func containsFold(s, word []byte) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		match := true
		for j, c := range word {
			b := s[i+j]
			if b >= 'A' && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != c {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// Methods, the values of the method label: the HTTP methods the API server
// serves, and "other" for anything else (including lower-case and garbage).
var methodNames = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other"}

const methodOther = uint8(len(methodNames) - 1)

func normalizeMethod(m []byte) uint8 {
	switch string(m) {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return methodOther
}

// codeNames holds the code label of each status 0..599 (0 is Envoy's "no
// response"), built once so the hot path never formats a number.
var codeNames = func() [600]string {
	var names [600]string
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	return names
}()

// codeClass is the Loki label of a status: "2xx" ... "5xx", "0xx" for none.
func codeClass(status int) string {
	return [...]string{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"}[status/100]
}
