package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/internal/testenv"
)

const (
	leaseNamespace = "kube-node-lease"
	leaseDuration  = 40               // seconds, as the kubelet sets it
	renewPeriod    = 10 * time.Second // how often the kubelet renews
	createWorkers  = 32
)

// newClient talks protobuf, as kubelets do, so the control plane spends its
// CPU on the requests and not on JSON, with no client-side rate limit.
func newClient(cp *testenv.ControlPlane) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(protobufConfig(cp.RESTConfig()))
}

// protobufConfig sets cfg up as newClient describes; the renewer child
// builds its client from a kubeconfig with it too.
func protobufConfig(cfg *rest.Config) *rest.Config {
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = "cascade-bench-fleet"
	cfg.QPS = -1 // unlimited
	return cfg
}

// createFleet creates n Nodes (with status) and their n Leases.
func createFleet(ctx context.Context, client kubernetes.Interface, n int) error {
	if b, err := json.Marshal(newNode(0, time.Now())); err == nil {
		progress("[%d] creating %d nodes (%.1f KiB of JSON each) and %d leases", n, n, float64(len(b))/1024, n)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNamespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", leaseNamespace, err)
	}

	start := time.Now()
	err := forEach(ctx, n, createWorkers, func(i int) error {
		now := time.Now()
		if err := createNode(ctx, client, newNode(i, now)); err != nil {
			return err
		}
		if _, err := client.CoordinationV1().Leases(leaseNamespace).Create(ctx, newLease(i, now), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("lease %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	progress("[%d] fleet created in %s (%.0f objects/s)", n, took.Round(time.Second), float64(2*n)/took.Seconds())
	return nil
}

// createNode creates the node and then sets its status: the API ignores the
// status of a create, as it does for a kubelet registering.
func createNode(ctx context.Context, client kubernetes.Interface, node *corev1.Node) error {
	status := node.Status
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", node.Name, err)
	}
	created.Status = status
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", node.Name, err)
	}
	return nil
}

// forEach runs fn(0..n-1) on a bounded pool of workers and returns the first
// error; the other workers stop taking work after it.
func forEach(ctx context.Context, n, workers int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   atomic.Bool
	)
	for range min(workers, n) {
		wg.Go(func() {
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func nodeName(i int) string { return fmt.Sprintf("pool-%d-node-%05d", i%8, i) }

// newLease is a node's lease as the kubelet creates it.
func newLease(i int, now time.Time) *coordinationv1.Lease {
	name := nodeName(i)
	t := metav1.NewMicroTime(now)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: leaseNamespace,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: name, UID: "00000000-0000-0000-0000-000000000000",
			}},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &name,
			LeaseDurationSeconds: ptr(int32(leaseDuration)),
			AcquireTime:          &t,
			RenewTime:            &t,
		},
	}
}

// newNode is a node as a cloud provider's kubelet reports it: about fifteen
// labels, capacity, five conditions, addresses, node info and about forty
// images, which makes 10–20 KB of JSON. The exporter only needs its Ready
// condition, but it receives all of it.
func newNode(i int, now time.Time) *corev1.Node {
	name := nodeName(i)
	zone := fmt.Sprintf("eu-west-1%c", 'a'+i%3)
	pool := fmt.Sprintf("pool-%d", i%8)
	id := fakeID(name)
	hb := metav1.NewTime(now)
	boot := metav1.NewTime(now.Add(-72 * time.Hour))
	resources := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("16"),
		corev1.ResourceMemory:           resource.MustParse("65843972Ki"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("203056560Ki"),
		"hugepages-1Gi":                 resource.MustParse("0"),
		"hugepages-2Mi":                 resource.MustParse("0"),
	}
	allocatable := resources.DeepCopy()
	allocatable[corev1.ResourceCPU] = resource.MustParse("15890m")
	allocatable[corev1.ResourceMemory] = resource.MustParse("63119620Ki")

	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname":                   name,
				"kubernetes.io/os":                         "linux",
				"kubernetes.io/arch":                       "amd64",
				"beta.kubernetes.io/os":                    "linux",
				"beta.kubernetes.io/arch":                  "amd64",
				"node.kubernetes.io/instance-type":         "gp1-m",
				"beta.kubernetes.io/instance-type":         "gp1-m",
				"topology.kubernetes.io/region":            "eu-west-1",
				"topology.kubernetes.io/zone":              zone,
				"failure-domain.beta.kubernetes.io/region": "eu-west-1",
				"failure-domain.beta.kubernetes.io/zone":   zone,
				"node-role.kubernetes.io/worker":           "",
				"bench.cascade.example/pool-name":          pool,
				"bench.cascade.example/pool-id":            fakeID(pool),
				"topology.csi.bench.example/zone":          zone,
			},
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:    fmt.Sprintf("100.%d.%d.0/24", 64+i/65536, (i/256)%256),
			PodCIDRs:   []string{fmt.Sprintf("100.%d.%d.0/24", 64+i/65536, (i/256)%256)},
			ProviderID: "bench://" + zone + "/" + id,
		},
		Status: corev1.NodeStatus{
			Capacity:    resources,
			Allocatable: allocatable,
			Conditions: []corev1.NodeCondition{
				condition(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated", "route controller created a route", hb, boot),
				condition(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", hb, boot),
				condition(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", hb, boot),
				condition(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available", hb, boot),
				condition(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status", hb, boot),
			},
			Addresses: []corev1.NodeAddress{
				// Only text in an object: nothing ever connects to it.
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", 16+i/65536, (i/256)%256, i%256)},
				{Type: corev1.NodeHostName, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               id[:32],
				SystemUUID:              id,
				BootID:                  fakeID(name + "/boot"),
				KernelVersion:           "6.12.48-1-cloud-amd64",
				OSImage:                 "Debian GNU/Linux 13 (trixie)",
				ContainerRuntimeVersion: "containerd://2.1.4",
				KubeletVersion:          "v1.37.2",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
			Images: nodeImages(i),
		},
	}
}

func condition(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string, hb, since metav1.Time) corev1.NodeCondition {
	return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: hb, LastTransitionTime: since}
}

// nodeImages is about forty images, each under a digest and a tag. Most are
// the same on every node (daemon sets, system pods); some vary by node.
func nodeImages(i int) []corev1.ContainerImage {
	images := make([]corev1.ContainerImage, 0, 40)
	for j := range 40 {
		repo := fmt.Sprintf("registry.bench.example/team-%02d/service-%02d", j%7, j)
		if j >= 28 { // application images differ between nodes
			repo = fmt.Sprintf("registry.bench.example/apps/app-%03d", (i*7+j)%500)
		}
		tag := fmt.Sprintf("v1.%d.%d", j%13, (i+j)%5)
		images = append(images, corev1.ContainerImage{
			Names:     []string{repo + "@sha256:" + fakeDigest(repo+tag), repo + ":" + tag},
			SizeBytes: int64(20+(j*37)%880) << 20,
		})
	}
	return images
}

// fakeID is a stable UUID-shaped string derived from s.
func fakeID(s string) string {
	h := hex.EncodeToString(sha256Sum(s))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func fakeDigest(s string) string { return hex.EncodeToString(sha256Sum(s)) }

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func ptr[T any](v T) *T { return &v }
