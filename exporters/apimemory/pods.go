package apimemory

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/cascade-sre/cascade/internal/kube"
)

const oomKilledReason = "OOMKilled"

// podSource watches the API server pods and keeps, per pod, what their
// status says about the API server container.
type podSource struct {
	container   string
	forgetAfter time.Duration
	informer    cache.SharedIndexInformer
	errors      prometheus.Counter
	logger      *slog.Logger
	now         func() time.Time

	mu sync.Mutex
	// watchUp is true while the last list or watch call succeeded. While it
	// is false the pods' status in the cache may be old.
	watchUp bool
	failing bool // logged as failing
	// pods is keyed by pod name. A deleted pod's entry stays (not
	// present) for forgetAfter, so that a pod re-created under the same
	// name, as a static pod is, continues its counts instead of starting
	// them again; then it is forgotten.
	pods map[string]*podState
}

type podState struct {
	present   bool
	deletedAt time.Time // zero unless deleted
	ready     bool
	limit     float64 // 0: none
	restarts  monotonicCounter
	oomKills  float64
	// recentTerminations are the last two terminations seen: a status shows
	// at most two (state and lastState) and they only move forward, so an
	// OOM kill is counted once however often the same status is delivered.
	recentTerminations [2]string
}

func newPodSource(cfg PodsConfig, forgetAfter time.Duration, client kubernetes.Interface, errorCount prometheus.Counter, logger *slog.Logger) (*podSource, error) {
	s := &podSource{
		container:   cfg.Container,
		forgetAfter: forgetAfter,
		now:         time.Now,
		errors:      errorCount,
		logger:      logger.With("source", kindPods, "namespace", cfg.Namespace, "selector", cfg.LabelSelector),
		pods:        map[string]*podState{},
	}
	pods := client.CoreV1().Pods(cfg.Namespace)
	// Wrapping list and watch is how the source learns whether the API
	// answers: the informer itself keeps serving its cache when it does not.
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = cfg.LabelSelector
			list, err := pods.List(ctx, opts)
			s.callDone(ctx, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = cfg.LabelSelector
			w, err := pods.Watch(ctx, opts)
			s.callDone(ctx, err)
			return w, err
		},
	}
	s.informer = cache.NewSharedIndexInformerWithOptions(kube.ListThenWatch(lw), &corev1.Pod{}, cache.SharedIndexInformerOptions{})
	if err := s.informer.SetTransform(stripManagedFields); err != nil {
		return nil, err
	}
	// Failed calls are counted and logged once per outage by callDone;
	// client-go's default handler would log every retry.
	if err := s.informer.SetWatchErrorHandlerWithContext(func(context.Context, *cache.Reflector, error) {}); err != nil {
		return nil, err
	}
	_, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.update(obj) },
		UpdateFunc: func(_, obj any) { s.update(obj) },
		DeleteFunc: s.delete,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// stripManagedFields drops what is most of a pod's size and none of our use.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func (s *podSource) run(ctx context.Context) {
	s.informer.RunWithContext(ctx)
}

func (s *podSource) callDone(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutting down
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors.Inc()
		if !s.failing {
			s.logger.Warn("cannot list or watch pods, their status is absent until it can", "err", err)
		}
	} else if s.failing {
		s.logger.Info("pod watch healthy again")
	}
	s.watchUp, s.failing = err == nil, err != nil
}

func (s *podSource) update(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pods[pod.Name]
	if st == nil {
		st = &podState{}
		s.pods[pod.Name] = st
	}
	st.present, st.ready, st.limit, st.deletedAt = false, false, 0, time.Time{}
	for _, c := range pod.Spec.Containers {
		if c.Name == s.container {
			st.present = true
			st.limit = float64(c.Resources.Limits.Memory().Value())
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != s.container {
			continue
		}
		st.ready = cs.Ready
		st.restarts.observe(float64(cs.RestartCount))
		// Older first, so both slots end up with this status's terminations.
		for _, t := range []*corev1.ContainerStateTerminated{cs.LastTerminationState.Terminated, cs.State.Terminated} {
			if t != nil && st.newTermination(t) && t.Reason == oomKilledReason {
				st.oomKills++
			}
		}
	}
}

// newTermination reports whether t was not seen before, and remembers it.
func (st *podState) newTermination(t *corev1.ContainerStateTerminated) bool {
	key := t.ContainerID + "|" + t.StartedAt.UTC().String() + "|" + t.FinishedAt.UTC().String()
	if key == st.recentTerminations[0] || key == st.recentTerminations[1] {
		return false
	}
	st.recentTerminations[0], st.recentTerminations[1] = st.recentTerminations[1], key
	return true
}

func (s *podSource) delete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.pods[pod.Name]; st != nil {
		st.present, st.deletedAt = false, now
	}
	s.forgetDeleted(now)
}

// forgetDeleted drops the pods deleted forgetAfter ago or more. s.mu must
// be held.
func (s *podSource) forgetDeleted(now time.Time) {
	for name, st := range s.pods {
		if !st.deletedAt.IsZero() && now.Sub(st.deletedAt) >= s.forgetAfter {
			delete(s.pods, name)
		}
	}
}

// observe adds an observation for every present pod and reports whether
// the watch is healthy.
func (s *podSource) observe(add func(replica string, o observation)) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetDeleted(now)
	for name, st := range s.pods {
		if !st.present {
			continue
		}
		o := observation{restarts: known(st.restarts.total), oomKills: known(st.oomKills)}
		if s.watchUp {
			o.up = known(boolValue(st.ready))
			if st.limit > 0 {
				o.limit = known(st.limit)
			}
		}
		add(name, o)
	}
	return s.watchUp
}
