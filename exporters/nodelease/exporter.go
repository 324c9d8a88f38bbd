// Package nodelease exports how long ago each node renewed its Lease in
// kube-node-lease, how many leases are fresh, late or expired, how many nodes
// are Ready, and whether the exporter can see any of it: while its watch is
// broken it says so and stops reporting lease and node counts, because "all
// leases look old" must never be confused with "we cannot see leases".
package nodelease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"
	"k8s.io/utils/clock"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/kube"
)

// The per-node families (contract.NodeLeaseRenewTimestamp and
// contract.NodeLeaseDuration) are written by AppendText, not through
// descriptors.
var (
	leasesDesc      = contract.NodeLeases.Desc()
	nodesDesc       = contract.Nodes.Desc()
	watchUpDesc     = contract.NodeLeaseWatchUp.Desc()
	lastEventDesc   = contract.NodeLeaseWatchLastEvent.Desc()
	watchErrorsDesc = contract.NodeLeaseWatchErrors.Desc()
)

// nodeCondition is a node's Ready condition.
type nodeCondition int

const (
	condReady nodeCondition = iota
	condNotReady
	condUnknown
	numConditions
)

var conditionNames = contract.NodeConditions

// Exporter watches Leases and Nodes and serves their metrics.
type Exporter struct {
	cfg    Config
	client *kube.Client
	logger *slog.Logger
	now    func() time.Time

	mu         sync.Mutex
	leases     *leaseTracker
	nodes      map[string]nodeCondition
	nodeCounts [numConditions]int

	// textMu guards snap, the per-node fields one scrape copies out of
	// leases, kept for the next so a scrape allocates nothing per node.
	textMu sync.Mutex
	snap   []nodeLease

	reflectors    []*cache.Reflector
	leasePageSize int64 // objects per list request
	nodePageSize  int64
	leaseWatch    watchHealth
	nodeWatch     watchHealth
	probeOK       atomic.Bool
	probeErrs     atomic.Uint64
	probeOutage   outage
}

// New returns an exporter; nothing is watched until Run.
func New(cfg Config, client *kube.Client, logger *slog.Logger) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("nodelease: a Kubernetes client is required")
	}
	e := &Exporter{
		cfg:    cfg,
		client: client,
		logger: logger,
		now:    time.Now,
		leases: newLeaseTracker(),
		nodes:  make(map[string]nodeCondition),

		leasePageSize: leaseListPageSize,
		nodePageSize:  nodeListPageSize,
	}
	// Until the first probe answers, trust the watch alone.
	e.probeOK.Store(cfg.ProbeInterval == 0)
	e.probeOutage = outage{logger: logger, what: "API server probe"}
	e.leaseWatch.outage = outage{logger: logger, what: "lease watch"}
	e.nodeWatch.outage = outage{logger: logger, what: "node watch"}
	e.buildReflectors()
	return e, nil
}

// Describe implements exporters.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{leasesDesc, nodesDesc, watchUpDesc, lastEventDesc, watchErrorsDesc} {
		ch <- d
	}
}

// Update implements exporters.Collector: the aggregate and health series.
func (e *Exporter) Update(ch chan<- prometheus.Metric) error {
	leaseUp := e.leaseWatch.up() && e.probeOK.Load()
	nodesUp := e.nodeWatch.up() && e.probeOK.Load()

	e.mu.Lock()
	e.leases.advance(e.now().UnixNano())
	leaseCounts := e.leases.counts
	nodeCounts := e.nodeCounts
	e.mu.Unlock()

	if leaseUp {
		for s, n := range leaseCounts {
			ch <- prometheus.MustNewConstMetric(leasesDesc, prometheus.GaugeValue, float64(n), stateNames[s])
		}
	}
	if nodesUp {
		for c, n := range nodeCounts {
			ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(n), conditionNames[c])
		}
	}
	ch <- prometheus.MustNewConstMetric(watchUpDesc, prometheus.GaugeValue, boolFloat(leaseUp))
	if t := e.leaseWatch.lastEvent.Load(); t > 0 {
		ch <- prometheus.MustNewConstMetric(lastEventDesc, prometheus.GaugeValue, float64(t)/1e9)
	}
	ch <- prometheus.MustNewConstMetric(watchErrorsDesc, prometheus.CounterValue, float64(e.leaseWatch.errors.Load()), "leases")
	ch <- prometheus.MustNewConstMetric(watchErrorsDesc, prometheus.CounterValue, float64(e.nodeWatch.errors.Load()), "nodes")
	ch <- prometheus.MustNewConstMetric(watchErrorsDesc, prometheus.CounterValue, float64(e.probeErrs.Load()), "probe")
	return nil
}

// buildReflectors sets up the lease and node reflectors; Run starts them.
// Each reflector hands what it decodes straight to the exporter (store),
// in its own goroutine, as kube-state-metrics does: an
// informer would queue every event, copy it into a cache of its own and
// pass it through three more goroutines before a handler saw it, which at
// 100 lease renewals a second cost more CPU than the exporter's own work,
// and its cache held a second copy of every lease and node.
func (e *Exporter) buildReflectors() {
	leaseAPI := e.client.Leases(e.cfg.Namespace)
	nodeAPI := e.client.Nodes()
	e.reflectors = []*cache.Reflector{
		e.newReflector(&e.leaseWatch, &coordinationv1.Lease{}, store{upsert: e.onLease, remove: e.onLeaseDeleted, keep: e.keepLeases}, &e.leasePageSize,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return leaseAPI.List(ctx, o) },
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return leaseAPI.Watch(ctx, o)
			},
			slimLease),
		e.newReflector(&e.nodeWatch, &corev1.Node{}, store{upsert: e.onNode, remove: e.onNodeDeleted, keep: e.keepNodes}, &e.nodePageSize,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodeAPI.List(ctx, o) },
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return nodeAPI.Watch(ctx, o) },
			slimNode),
	}
}

// startupGCPercent is the GOGC while the initial lists are read: each page
// of whole Nodes (1-2 MB decoded) is garbage as soon as it is slimmed, and
// at the steady state's GC goal the pages piled up into a start-up peak
// above the steady state.
const startupGCPercent = 10

// Run watches until ctx is done.
func (e *Exporter) Run(ctx context.Context) error {
	gcPercent := debug.SetGCPercent(startupGCPercent)
	var wg sync.WaitGroup
	for _, r := range e.reflectors {
		wg.Go(func() { runReflector(ctx, r) })
	}
	if e.cfg.ProbeInterval > 0 {
		wg.Go(func() { e.probeLoop(ctx) })
	}
	wg.Go(func() {
		synced := cache.WaitForCacheSync(ctx.Done(), e.leaseWatch.synced.Load, e.nodeWatch.synced.Load)
		debug.SetGCPercent(gcPercent)
		if synced {
			// The initial lists are garbage now; the runtime would keep
			// their pages for minutes. Hand them back once, at start.
			debug.FreeOSMemory()
		}
	})
	wg.Wait()
	return nil
}

// runReflector is what Reflector.RunWithContext does, with its back-off
// between failed calls, but without its error handler, which would log
// every retry: each list and watch call is recorded, and an outage logged
// once, by the exporter's watchHealth (newReflector).
func runReflector(ctx context.Context, r *cache.Reflector) {
	backoff := wait.Backoff{Duration: 800 * time.Millisecond, Cap: 30 * time.Second, Steps: 38, Factor: 2, Jitter: 1}
	_ = backoff.DelayWithReset(clock.RealClock{}, 2*time.Minute).Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		_ = r.ListAndWatchWithContext(ctx)
		return false, nil
	})
}

type listFunc = func(context.Context, metav1.ListOptions) (runtime.Object, error)
type watchFunc = func(context.Context, metav1.ListOptions) (watch.Interface, error)

// newReflector builds a reflector into s whose list and watch calls, and
// first list, report to h; each list reads *pageSize objects a page.
func (e *Exporter) newReflector(h *watchHealth, example runtime.Object, s store, pageSize *int64, list listFunc, watchFn watchFunc, slim slimFunc) *cache.Reflector {
	s.health = h
	lw := &cache.ListWatch{
		// List pages are slimmed as they arrive, before the next is read:
		// at 5,000 nodes a list of whole Node objects holds over 100 MB
		// at once. Watch events are slimmed by the store, one at a time.
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := listInPages(ctx, o, *pageSize, list, slim)
			h.record(ctx, err, e.now())
			if err != nil {
				return nil, err
			}
			h.lastEvent.Store(e.now().UnixNano())
			return obj, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			h.record(ctx, err, e.now())
			return w, err
		},
	}
	return cache.NewReflectorWithOptions(kube.ListThenWatch(lw), example, s, cache.ReflectorOptions{})
}

// store receives what one reflector decodes, in the reflector's goroutine.
// A list replaces everything: what it does not hold is gone.
type store struct {
	upsert func(obj any) string // records obj; its name, "" if obj is not the store's kind
	remove func(obj any)
	keep   func(listed map[string]bool) // forgets every object not listed
	health *watchHealth                 // marked synced by the first list
}

func (s store) Add(obj any) error    { s.upsert(obj); return nil }
func (s store) Update(obj any) error { s.upsert(obj); return nil }
func (s store) Delete(obj any) error { s.remove(obj); return nil }
func (s store) Resync() error        { return nil }

func (s store) Replace(items []any, _ string) error {
	listed := make(map[string]bool, len(items))
	for _, obj := range items {
		if name := s.upsert(obj); name != "" {
			listed[name] = true
		}
	}
	s.keep(listed)
	s.health.synced.Store(true)
	return nil
}

// keepLeases forgets every lease not listed.
func (e *Exporter) keepLeases(listed map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name := range e.leases.leases {
		if !listed[name] {
			e.leases.remove(name)
		}
	}
}

// keepNodes forgets every node not listed.
func (e *Exporter) keepNodes(listed map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, cond := range e.nodes {
		if !listed[name] {
			e.nodeCounts[cond]--
			delete(e.nodes, name)
		}
	}
}

// onLease records a lease from the watch (a Lease) or from a list page (a
// listedLease) and returns its name ("" for anything else).
func (e *Exporter) onLease(obj any) string {
	l, ok := slimLease(obj).(*listedLease)
	if !ok {
		return ""
	}
	now := e.now()
	e.leaseWatch.lastEvent.Store(now.UnixNano())
	e.mu.Lock()
	e.leases.upsert(l.name, l.renewNanos, l.durationNs, now.UnixNano())
	e.mu.Unlock()
	return l.name
}

// nodeLease is what one per-node sample needs, copied out under the lock.
type nodeLease struct {
	label      string // the node's name escaped as a label value
	renewNanos int64
	durationNs int64
}

// snapshot copies what the per-node samples need under the lock into
// e.snap, kept for the next scrape, and returns it with the version of the
// durations it holds. The caller holds e.textMu.
func (e *Exporter) snapshot() ([]nodeLease, uint64) {
	e.mu.Lock()
	snap := e.snap[:0]
	for _, l := range e.leases.byName {
		snap = append(snap, nodeLease{l.label, l.renewNanos, l.durationNs})
	}
	version := e.leases.steadyVersion
	e.mu.Unlock()
	e.snap = snap
	return snap, version
}

// AppendText implements exporters.TextAppender: the renew times, which
// change on every renewal, unless per-node series are off. It copies the few
// fields it needs under the lock and formats outside it, so a scrape holds
// up the watch for microseconds, not for the whole formatting.
func (e *Exporter) AppendText(b []byte) []byte {
	if !e.cfg.PerNodeSeries {
		return b
	}
	e.textMu.Lock()
	defer e.textMu.Unlock()
	snap, _ := e.snapshot()
	if len(snap) == 0 {
		return b
	}
	renew := contract.NodeLeaseRenewTimestamp
	b = exporters.AppendHelpType(b, renew.Name, renew.Help, string(renew.Type))
	for _, l := range snap {
		if l.renewNanos != 0 {
			b = exporters.AppendEscapedSeries(b, renew.Name, "node", l.label)
			b = exporters.AppendSeconds(b, l.renewNanos)
			b = append(b, '\n')
		}
	}
	return b
}

// AppendSteadyText implements exporters.TextAppender: the lease durations,
// which change only when a lease comes, goes or is given another duration.
func (e *Exporter) AppendSteadyText(b []byte) ([]byte, uint64) {
	e.textMu.Lock()
	defer e.textMu.Unlock()
	snap, version := e.snapshot()
	if !e.cfg.PerNodeSeries || len(snap) == 0 {
		return b, version
	}
	dur := contract.NodeLeaseDuration
	b = exporters.AppendHelpType(b, dur.Name, dur.Help, string(dur.Type))
	for _, l := range snap {
		b = exporters.AppendEscapedSeries(b, dur.Name, "node", l.label)
		b = exporters.AppendSeconds(b, l.durationNs)
		b = append(b, '\n')
	}
	return b, version
}

// SteadyVersion implements exporters.TextAppender.
func (e *Exporter) SteadyVersion() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leases.steadyVersion
}

func (e *Exporter) onLeaseDeleted(obj any) {
	e.leaseWatch.lastEvent.Store(e.now().UnixNano())
	name, ok := deletedName(obj)
	if !ok {
		return
	}
	e.mu.Lock()
	e.leases.remove(name)
	e.mu.Unlock()
}

// onNode counts a node's Ready condition and returns its name ("" for
// anything but a node).
func (e *Exporter) onNode(obj any) string {
	n, ok := slimNode(obj).(*readyNode)
	if !ok {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.nodes[n.name]; ok {
		e.nodeCounts[old]--
	}
	e.nodes[n.name] = n.ready
	e.nodeCounts[n.ready]++
	return n.name
}

func (e *Exporter) onNodeDeleted(obj any) {
	name, ok := deletedName(obj)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.nodes[name]; ok {
		e.nodeCounts[old]--
		delete(e.nodes, name)
	}
}

// probeLoop asks the API for one lease by a name no node has: a 404 proves
// the API server authenticates and answers the exporter, at the cost of one
// small GET, whatever the fleet size.
func (e *Exporter) probeLoop(ctx context.Context) {
	ticker := time.NewTicker(e.cfg.ProbeInterval)
	defer ticker.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, e.cfg.ProbeTimeout)
		_, err := e.client.Leases(e.cfg.Namespace).Get(pctx, "cascade-probe.invalid", metav1.GetOptions{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil || apierrors.IsNotFound(err)
		if ok {
			e.probeOutage.ended(e.now())
		} else {
			e.probeErrs.Add(1)
			e.probeOutage.failed(err, e.now())
		}
		e.probeOK.Store(ok)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// watchHealth follows one reflector: healthy once its first list is in and
// while no error came after its last successful list, watch or event.
type watchHealth struct {
	synced      atomic.Bool
	lastSuccess atomic.Int64
	lastFailure atomic.Int64
	lastEvent   atomic.Int64
	errors      atomic.Uint64
	outage      outage
}

// record notes how a list or watch call of ctx ended. A call cut short by
// the exporter's own shutdown is no failure of the API.
func (h *watchHealth) record(ctx context.Context, err error, now time.Time) {
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		h.errors.Add(1)
		h.lastFailure.Store(now.UnixNano())
		h.outage.failed(err, now)
		return
	}
	h.lastSuccess.Store(now.UnixNano())
	h.outage.ended(now)
}

// outage logs a call that fails once when it starts failing and once when it
// works again, never at every retry: a dead API server is retried as long
// as it is dead, each retry counted in cascade_node_lease_watch_errors_total.
type outage struct {
	logger *slog.Logger
	what   string

	mu       sync.Mutex
	failing  bool
	since    time.Time
	failures int
}

func (o *outage) failed(err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures++
	if o.failing {
		return
	}
	o.failing, o.since = true, now
	o.logger.Warn(o.what+" failing; retrying, logged again when it recovers", "err", err)
}

func (o *outage) ended(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.failing {
		return
	}
	o.logger.Info(o.what+" recovered", "failing_for", now.Sub(o.since).Round(time.Millisecond), "failed_calls", o.failures)
	o.failing, o.failures = false, 0
}

func (h *watchHealth) up() bool {
	if !h.synced.Load() {
		return false
	}
	return h.lastFailure.Load() <= max(h.lastSuccess.Load(), h.lastEvent.Load())
}

// How many objects one list request asks for. A whole Node is 10-20 KB of
// protobuf and several times that decoded: a page of 100 took some 5 MB
// while read and decoded, which put the start-up peak above the steady
// state once the steady state was lower; a page of 25 takes a quarter of
// that. A Lease is under 1 KB. At 5,000 nodes that is 200 node pages and 20
// lease pages.
const (
	nodeListPageSize  = 25
	leaseListPageSize = 250
)

// listInPages lists in pages of pageSize objects with client-go's pager,
// slimming each page before asking for the next, and returns one list of
// slim objects.
//
// The reflector's first list (it lists, never streams a watch-list: see
// kube.ListThenWatch) asks for resourceVersion "0". The API server answers
// it from its watch cache in one response whatever the limit: at 5,000
// nodes some 50 MB of protobuf, read whole, copied and decoded at once,
// which made a 300 MB start-up peak. Pages need resourceVersion "": the
// newest state, at least as fresh as any version the reflector asks for,
// read page by page from a consistent snapshot (the continue token pins it).
// For the same reason an expired continue token fails the list (the
// reflector lists again) instead of falling back to one whole list.
func listInPages(ctx context.Context, o metav1.ListOptions, pageSize int64, list listFunc, slim slimFunc) (runtime.Object, error) {
	p := &pager.ListPager{
		PageSize: pageSize,
		PageFn: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			page, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return slimPage(page, slim)
		},
	}
	obj, _, err := p.List(ctx, metav1.ListOptions{
		LabelSelector:  o.LabelSelector,
		FieldSelector:  o.FieldSelector,
		TimeoutSeconds: o.TimeoutSeconds,
	})
	return obj, err
}

// slimPage is page with its items slimmed: a generic list, since its items
// (readyNode) do not fit a NodeList, with the page's resource version and
// continue token.
func slimPage(page runtime.Object, slim slimFunc) (runtime.Object, error) {
	items, err := meta.ExtractList(page)
	if err != nil {
		return nil, err
	}
	lm, err := meta.ListAccessor(page)
	if err != nil {
		return nil, err
	}
	out := &metav1.List{ListMeta: metav1.ListMeta{ResourceVersion: lm.GetResourceVersion(), Continue: lm.GetContinue()}}
	slimmed := make([]runtime.Object, 0, len(items))
	for _, item := range items {
		obj, ok := slim(item).(runtime.Object)
		if !ok {
			return nil, fmt.Errorf("nodelease: slimmed list item is a %T, not an API object", slim(item))
		}
		slimmed = append(slimmed, obj)
	}
	return out, meta.SetList(out, slimmed)
}

// slimFunc returns what the exporter keeps of a listed object.
type slimFunc func(obj any) any

// listedLease is what a lease list page keeps of each Lease while the
// pages are read: a tenth of a Lease even with its metadata dropped.
type listedLease struct {
	name       string
	renewNanos int64 // renewTime in Unix nanoseconds; 0 when never renewed
	durationNs int64
}

// slimLease turns a Lease into a listedLease.
func slimLease(obj any) any {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return obj
	}
	out := &listedLease{name: l.Name, durationNs: int64(defaultLeaseDuration)}
	if l.Spec.RenewTime != nil {
		out.renewNanos = l.Spec.RenewTime.UnixNano()
	}
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		out.durationNs = int64(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	}
	return out
}

// readyNode is what a node list page keeps of each Node while the pages are
// read: its name and Ready condition, not the kilobytes of images,
// addresses and the rest of its status.
type readyNode struct {
	name  string
	ready nodeCondition
}

// slimNode turns a Node into a readyNode.
func slimNode(obj any) any {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj
	}
	return &readyNode{name: n.Name, ready: readyCondition(n)}
}

// listedLease and readyNode are API objects only as far as a list page
// needs (the reflector takes the page's items as runtime.Objects); no
// client ever encodes them.
func (*listedLease) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *listedLease) DeepCopyObject() runtime.Object { c := *l; return &c }
func (*readyNode) GetObjectKind() schema.ObjectKind   { return schema.EmptyObjectKind }
func (n *readyNode) DeepCopyObject() runtime.Object   { c := *n; return &c }

func readyCondition(n *corev1.Node) nodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		switch c.Status {
		case corev1.ConditionTrue:
			return condReady
		case corev1.ConditionFalse:
			return condNotReady
		}
		return condUnknown
	}
	return condUnknown
}

func deletedName(obj any) (string, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
		if obj == nil {
			_, name, err := cache.SplitMetaNamespaceKey(d.Key)
			return name, err == nil
		}
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", false
	}
	return m.GetName(), true
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
