// Package kubelet simulates a fleet of kubelets for the lab: each node has
// its own bearer token and its own connection, registers its Node, renews
// its Lease with kubelet's own lease controller (k8s.io/component-helpers:
// up to 5 immediate retries, then 200 ms doubling to 7 s while the lease
// cannot be read), watches its Node and patches its status as kubelet does
// (on change, and every 5 minutes), all with kubelet's user agent. Nothing
// runs in the nodes: what the control plane sees of them is what it would
// see of real kubelets.
package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/apimachinery/lease"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// UserAgent is what kubelet v1.37.2 sends.
const UserAgent = "kubelet/v1.37.2 (linux/amd64) kubernetes/a8f4bbd"

// Kubelet's timing (its defaults in v1.37).
const (
	RenewInterval         = 10 * time.Second // the lease: a quarter of its duration
	LeaseDurationSeconds  = 40
	StatusUpdateFrequency = 10 * time.Second // how often status is checked
	StatusReportFrequency = 5 * time.Minute  // how often it is sent unchanged
	statusUpdateRetry     = 5
	leaseNamespace        = "kube-node-lease"
)

// Node is one simulated kubelet's identity.
type Node struct {
	Name  string
	Token string
}

// Config is what every kubelet of a fleet shares.
type Config struct {
	// Server is the URL the kubelets talk to: the API server, or the
	// gateway in front of it.
	Server string
	// Labels are added to every Node (a zone, say).
	Labels map[string]string
	// StartSpread is how long starting the whole fleet takes: kubelets of a
	// real fleet do not all start in the same instant.
	StartSpread time.Duration
}

// Fleet is a set of running kubelets.
type Fleet struct {
	cfg       Config
	responses responseCounts

	mu       sync.Mutex
	kubelets map[string]*kubelet
	wg       sync.WaitGroup
}

// NewFleet returns an empty fleet.
func NewFleet(cfg Config) *Fleet {
	return &Fleet{cfg: cfg, kubelets: map[string]*kubelet{}}
}

// Start starts a kubelet for each node, spread over cfg.StartSpread, and
// returns at once; the kubelets run until Stop or ctx ends.
func (f *Fleet) Start(ctx context.Context, nodes []Node) {
	var step time.Duration
	if len(nodes) > 1 {
		step = f.cfg.StartSpread / time.Duration(len(nodes))
	}
	// Kubelet's errors are what the lab provokes; its timeline shows them.
	ctx = klog.NewContext(ctx, logr.Discard())
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for i, n := range nodes {
			if i > 0 && step > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(step):
				}
			}
			k, err := f.newKubelet(n)
			if err != nil {
				f.responses.startErrors.Add(1)
				continue
			}
			kctx, cancel := context.WithCancel(ctx)
			k.cancel = cancel
			f.mu.Lock()
			f.kubelets[n.Name] = k
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				k.run(kctx)
			}()
		}
	}()
}

// StopNode stops one kubelet, as a node that dies: its lease stops.
func (f *Fleet) StopNode(name string) bool {
	f.mu.Lock()
	k := f.kubelets[name]
	delete(f.kubelets, name)
	f.mu.Unlock()
	if k == nil {
		return false
	}
	k.cancel()
	return true
}

// Stop stops every kubelet and waits for them.
func (f *Fleet) Stop() {
	f.mu.Lock()
	for _, k := range f.kubelets {
		k.cancel()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// Registered is how many kubelets have registered their Node.
func (f *Fleet) Registered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, k := range f.kubelets {
		if k.registered.Load() {
			n++
		}
	}
	return n
}

// Responses counts the API's answers to the fleet by status code, 0 for
// requests that got none (refused, reset, timed out).
func (f *Fleet) Responses() map[int]int64 { return f.responses.snapshot() }

// FirstResponse is when the fleet first got code, zero if never.
func (f *Fleet) FirstResponse(code int) time.Time { return f.responses.first(code) }

type responseCounts struct {
	mu          sync.Mutex
	counts      map[int]int64
	firsts      map[int]time.Time
	startErrors atomic.Int64
}

func (r *responseCounts) add(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts, r.firsts = map[int]int64{}, map[int]time.Time{}
	}
	if r.counts[code] == 0 {
		r.firsts[code] = time.Now()
	}
	r.counts[code]++
}

func (r *responseCounts) snapshot() map[int]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int64, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

func (r *responseCounts) first(code int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firsts[code]
}

// counting records the status of every response the kubelets get.
type counting struct {
	next   http.RoundTripper
	counts *responseCounts
}

func (c counting) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		c.counts.add(0)
		return resp, err
	}
	c.counts.add(resp.StatusCode)
	return resp, nil
}

// kubelet is one simulated node.
type kubelet struct {
	node      Node
	cfg       Config
	transport *http.Transport
	// client is kubelet's main client; heartbeat its lease and status
	// client: no rate limit, a timeout of the status update frequency.
	client, heartbeat kubernetes.Interface
	cancel            context.CancelFunc

	registered atomic.Bool
	uid        types.UID
	lister     cache.Indexer
	// lastReport is when status was last sent; reportDelay spreads the
	// fleet's unchanged reports, as kubelet's calculateDelay does.
	lastReport  time.Time
	reportDelay time.Duration
}

func (f *Fleet) newKubelet(n Node) (*kubelet, error) {
	// Each node its own connection, as real kubelets have.
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the lab's self-signed API servers
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	base := &rest.Config{
		Host:        f.cfg.Server,
		BearerToken: n.Token,
		UserAgent:   UserAgent,
		Transport:   counting{next: tr, counts: &f.responses},
		ContentConfig: rest.ContentConfig{
			ContentType:        "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json",
		},
		QPS:   50, // kubelet's kubeAPIQPS and kubeAPIBurst
		Burst: 100,
	}
	client, err := kubernetes.NewForConfig(base)
	if err != nil {
		return nil, err
	}
	hb := rest.CopyConfig(base)
	hb.QPS = -1
	hb.Timeout = StatusUpdateFrequency
	heartbeat, err := kubernetes.NewForConfig(hb)
	if err != nil {
		return nil, err
	}
	return &kubelet{node: n, cfg: f.cfg, transport: tr, client: client, heartbeat: heartbeat}, nil
}

// onRepeatedHeartbeatFailure is kubelet's: drop idle connections, so the
// next attempt dials again instead of waiting on a dead one.
func (k *kubelet) onRepeatedHeartbeatFailure() { k.transport.CloseIdleConnections() }

func (k *kubelet) run(ctx context.Context) {
	defer k.transport.CloseIdleConnections()
	if !k.register(ctx) {
		return
	}
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.node.Name).String()
	}))
	nodes := factory.Core().V1().Nodes().Informer()
	k.lister = nodes.GetIndexer()
	factory.Start(ctx.Done())

	ctl := lease.NewController(clock.RealClock{}, k.heartbeat, k.node.Name, LeaseDurationSeconds,
		k.onRepeatedHeartbeatFailure, RenewInterval, k.node.Name, leaseNamespace, k.setNodeOwner)
	go ctl.Run(ctx)

	k.reportDelay = time.Duration(float64(StatusReportFrequency) * (rand.Float64() - 0.5))
	tick := time.NewTicker(StatusUpdateFrequency)
	defer tick.Stop()
	for {
		k.syncNodeStatus(ctx)
		select {
		case <-ctx.Done():
			factory.Shutdown()
			return
		case <-tick.C:
		}
	}
}

// register creates the Node, retrying from 100 ms doubling to 7 s, as
// kubelet's registerWithAPIServer does; an existing Node is taken over.
func (k *kubelet) register(ctx context.Context) bool {
	step := 100 * time.Millisecond
	for {
		n, err := k.client.CoreV1().Nodes().Create(ctx, k.initialNode(), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			n, err = k.client.CoreV1().Nodes().Get(ctx, k.node.Name, metav1.GetOptions{})
		}
		if err == nil {
			k.uid = n.UID
			k.registered.Store(true)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(step):
		}
		step = min(2*step, 7*time.Second)
	}
}

func (k *kubelet) initialNode() *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":           k.node.Name,
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               "amd64",
		"node.kubernetes.io/instance-type": "lab-4x16",
	}
	for key, v := range k.cfg.Labels {
		labels[key] = v
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.node.Name, Labels: labels}}
}

// setNodeOwner makes the Node own its Lease, as kubelet does.
func (k *kubelet) setNodeOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) > 0 {
		return nil
	}
	if k.uid == "" {
		return fmt.Errorf("node %s not registered", k.node.Name)
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: k.node.Name, UID: k.uid}}
	return nil
}

// syncNodeStatus is kubelet's updateNodeStatus: the first try reads the
// Node from the watch, retries from the API; status is patched when it
// changed (the node controller marked the node Unknown, say) or when the
// report frequency has passed.
func (k *kubelet) syncNodeStatus(ctx context.Context) {
	for try := range statusUpdateRetry {
		if ctx.Err() != nil {
			return
		}
		var orig *corev1.Node
		var err error
		if try == 0 {
			orig, err = k.fromWatch()
		} else {
			orig, err = k.heartbeat.CoreV1().Nodes().Get(ctx, k.node.Name, metav1.GetOptions{})
		}
		if err == nil {
			err = k.patchStatus(orig)
		}
		if err == nil {
			return
		}
		if try > 0 {
			k.onRepeatedHeartbeatFailure()
		}
	}
}

func (k *kubelet) fromWatch() (*corev1.Node, error) {
	obj, ok, err := k.lister.GetByKey(k.node.Name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("node %s not in the watch yet", k.node.Name)
	}
	return obj.(*corev1.Node), nil
}

func (k *kubelet) patchStatus(orig *corev1.Node) error {
	now := metav1.Now()
	node := orig.DeepCopy()
	changed := false
	set := func(t corev1.NodeConditionType, status corev1.ConditionStatus, reason, message string) {
		i, c := nodeutil.GetNodeCondition(&node.Status, t)
		if c == nil {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: t})
			i = len(node.Status.Conditions) - 1
			c = &node.Status.Conditions[i]
		}
		if c.Status != status || c.Reason != reason {
			changed = true
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message, c.LastHeartbeatTime = status, reason, message, now
	}
	set(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
	set(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
	set(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
	set(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status")
	if node.Status.Capacity == nil {
		changed = true
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("4"),
			corev1.ResourceMemory: resource.MustParse("16Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
		node.Status.Capacity, node.Status.Allocatable = capacity, capacity
		node.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "containerd://2.1.0"}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: k.node.Name}}
	}
	if !changed && time.Since(k.lastReport) < StatusReportFrequency+k.reportDelay {
		return nil
	}
	if _, _, err := nodeutil.PatchNodeStatus(k.heartbeat.CoreV1(), types.NodeName(k.node.Name), orig, node); err != nil {
		return err
	}
	k.lastReport = time.Now()
	k.reportDelay = 0
	return nil
}
