package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/lab/kubelet"
)

// apiserverArgs are what every API server of the lab runs with beyond
// testenv's common flags: nodes authorized as nodes (the Node authorizer
// and NodeRestriction, as kubeadm sets them up), and no service account
// admission (no controller creates service accounts here).
func apiserverArgs(extra ...string) []string {
	return append([]string{
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=ServiceAccount",
	}, extra...)
}

// labCluster is one cluster of the lab: its credentials, API server
// replicas, controller manager, kubelets and the lab's watch on them.
type labCluster struct {
	name       string
	dir        string
	creds      *testenv.Credentials
	tokenFile  string // the admin's token, for the memory exporter's probes
	kubeconfig string // the admin's, straight to the first replica
	api        *testenv.APIServer
	nodes      []kubelet.Node
	fleet      *kubelet.Fleet
	obs        *observer
}

// nodeIdentities makes n nodes named PREFIX-node-NNNN, each with its own
// token.
func nodeIdentities(prefix string, n int) ([]kubelet.Node, error) {
	nodes := make([]kubelet.Node, n)
	for i := range nodes {
		tok, err := testenv.RandomToken()
		if err != nil {
			return nil, err
		}
		nodes[i] = kubelet.Node{Name: fmt.Sprintf("%snode-%04d", prefix, i), Token: tok}
	}
	return nodes, nil
}

// newCluster prepares a cluster's directory and credentials: the admin's
// token, plus the nodes' own tokens when the API server checks them itself
// (nil when a webhook does).
func (l *lab) newCluster(name string, nodes []kubelet.Node, staticNodeTokens bool) (*labCluster, error) {
	c := &labCluster{name: name, dir: filepath.Join(l.dir, name), nodes: nodes}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	var tokens []testenv.StaticToken
	if staticNodeTokens {
		for _, n := range nodes {
			tokens = append(tokens, testenv.StaticToken{Token: n.Token, User: "system:node:" + n.Name, UID: n.Name, Groups: []string{"system:nodes"}})
		}
	}
	creds, err := testenv.WriteCredentials(filepath.Join(c.dir, "credentials"), tokens...)
	if err != nil {
		return nil, err
	}
	c.creds = creds
	c.tokenFile = filepath.Join(c.dir, "credentials", "admin-token")
	if err := atomicfile.WriteFile(c.tokenFile, []byte(creds.Token), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// admin is a client for the cluster's admin on its first replica.
func (c *labCluster) admin() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(testenv.AdminConfig(c.api.URL, c.creds))
}

// startControlPlaneSide starts what watches the cluster from its control
// plane once its API server runs: the node lifecycle controller and the
// lab's own watch.
func (l *lab) startControlPlaneSide(ctx context.Context, c *labCluster) error {
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := testenv.WriteKubeconfig(c.kubeconfig, c.api.URL, c.creds.Token); err != nil {
		return err
	}
	kcm, err := testenv.StartControllerManager(testenv.ControllerManagerConfig{Dir: c.dir, Kubeconfig: c.kubeconfig})
	if err != nil {
		return err
	}
	l.atExit(kcm.Stop)
	cfg := testenv.AdminConfig(c.api.URL, c.creds)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.obs = newObserver(ctx, c.name, len(c.nodes), client, l.tl)
	l.observers = append(l.observers, c.obs)
	return c.obs.waitRead(ctx)
}

// startFleet starts the cluster's kubelets against server.
func (l *lab) startFleet(ctx context.Context, c *labCluster, server string) {
	c.fleet = kubelet.NewFleet(kubelet.Config{
		Server:      server,
		Labels:      map[string]string{"topology.kubernetes.io/zone": c.name + "-a"},
		StartSpread: min(time.Duration(len(c.nodes))*20*time.Millisecond, 30*time.Second),
	})
	c.fleet.Start(ctx, c.nodes)
	l.atExit(c.fleet.Stop)
}

// awaitFleetReady waits until every cluster's nodes are Ready with fresh
// leases.
func (l *lab) awaitFleetReady(ctx context.Context, nodes int) error {
	timeout := 3*time.Minute + time.Duration(nodes)*100*time.Millisecond
	if !waitUntil(ctx, timeout, l.allHealthy) {
		return fmt.Errorf("the fleet was not Ready with fresh leases after %s", timeout)
	}
	l.tl.add(evFleetReady, "", "fleet ready: %d nodes in %d cluster(s) Ready, every lease fresh", nodes, len(l.observers))
	return nil
}

// Sizing of the cluster shape's API server (measured on kube-apiserver
// v1.37.2: about 280 MiB idle, 0.27 MiB more per node with its Lease, Node
// and watch (540 MiB at 1,000 nodes); each MiB of stored ConfigMaps costs
// about 2.2 MiB of resident memory while serving, and 4 MiB more while
// the watch cache loads them, at start or on a relist).
const (
	apiserverIdle     = 280 << 20
	apiserverPerNode  = 300 << 10
	apiserverHeadroom = 220 << 20
	releaseBytes      = 900 << 10 // a rendered Helm release: under etcd's 1.5 MiB request limit
	remedyCostPerByte = 7
)

// runClusterShape is the cluster shape: one cluster whose API server runs
// out of memory under simultaneous deployments.
func (l *lab) runClusterShape(ctx context.Context) error {
	o := l.opts
	etcd, err := l.startEtcd()
	if err != nil {
		return err
	}
	nodes, err := nodeIdentities("", o.Nodes)
	if err != nil {
		return err
	}
	c, err := l.newCluster("cluster-1", nodes, true)
	if err != nil {
		return err
	}
	limit := o.MemoryLimit
	if limit == 0 {
		limit = apiserverIdle + int64(o.Nodes)*apiserverPerNode + apiserverHeadroom
	}
	mem0, err := l.memoryLimit("apiserver-0", limit)
	if err != nil {
		return err
	}
	l.limit, l.killMechanism = limit, mem0.Describe()
	fmt.Fprintf(l.out, "lab: the API server runs under a %s limit; what kills it there: %s\n", mib(limit), mem0.Describe())
	c.api, err = testenv.NewAPIServer(testenv.APIServerConfig{
		Dir: c.dir, Name: "apiserver-0", EtcdURL: etcd.URL, Credentials: c.creds, Memory: mem0, Args: apiserverArgs(),
	})
	if err != nil {
		return err
	}
	rep0 := l.runReplica(ctx, newReplica(l, "apiserver-0", c.name, c.api, mem0))
	if !waitUntil(ctx, 3*time.Minute, rep0.isUp) {
		return fmt.Errorf("apiserver-0 did not start:\n%s", c.api.LogTail(3000))
	}
	gw, err := testenv.StartNginx(filepath.Join(l.dir, "gateway"), c.api.URL, testenv.NginxOptions{
		// Watches live through the gateway; kubelet's own client gives up
		// on a request after 10 s.
		ProxyReadTimeout:  5 * time.Minute,
		WorkerConnections: max(4096, 8*o.Nodes),
	})
	if err != nil {
		return err
	}
	l.atExit(gw.Stop)
	l.gateway = newGatewayRate(gw.AccessLog)
	go l.gateway.run(ctx)
	if err := l.startControlPlaneSide(ctx, c); err != nil {
		return err
	}
	if err := l.startAlerting(); err != nil {
		return err
	}
	labels := map[string]string{"region": Region, "cluster": c.name}
	if err := l.startExporter(c.name, labels, append(memoryArgs("apiserver-0", c.api.URL+"/metrics", c.tokenFile, mem0),
		"--kubeconfig="+c.kubeconfig, "--exporter.gateway", "--gateway.log=nginx-json:"+gw.AccessLog)...); err != nil {
		return err
	}
	if err := l.startCascadeRun(ctx); err != nil {
		return err
	}
	go l.followNotifications(ctx)
	l.startFleet(ctx, c, gw.URL)
	if err := l.awaitFleetReady(ctx, o.Nodes); err != nil {
		return err
	}
	go l.watch(ctx)
	go l.status(ctx, func() string { return replicaMemory(c.api, mem0) })

	if !sleep(ctx, o.Baseline) {
		return ctx.Err()
	}
	baseline := residentBytes(c.api.Pid())
	if baseline >= limit*85/100 {
		return fmt.Errorf("the API server already uses %s of its %s limit before any deployment: give --memory-limit more room", mib(baseline), mib(limit))
	}
	// The burst is 0.8 of the headroom: at 2.2 times its size in memory
	// it overruns the limit nearly twofold, and the restart, at 4 times,
	// too.
	headroom := limit - baseline
	plan := planDeployments(headroom*4/5, releaseBytes, 30)
	if o.DryRun {
		plan = planDeployments(headroom*15/100, releaseBytes, 10)
	}
	admin, err := c.admin()
	if err != nil {
		return err
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	write, err := configMapWriter(testenv.AdminConfig(gw.URL, c.creds), "apps", plan.Deployers)
	if err != nil {
		return err
	}
	for _, obs := range l.observers {
		obs.arm()
	}
	if o.DryRun {
		l.tl.add(evDeploy, "", "dry run: deployments within the limit: %s (the API server uses %s of %s)", plan, mib(baseline), mib(limit))
	} else {
		l.tl.add(evFault, "", "FAULT injected: simultaneous deployments through the gateway: %s (the API server uses %s of its %s limit)", plan, mib(baseline), mib(limit))
	}
	res, deployed := deploy(ctx, plan, write)

	if o.DryRun {
		return l.finishDryRun(ctx, deployed, res)
	}
	// Enough for a replica that reloads its watch cache (4 times the
	// releases) while serving them (2.2 times): the API server relists a
	// resource whose watch fell behind etcd's compaction, every 5 minutes.
	sized := roundUp(max(4*limit, baseline+int64(remedyCostPerByte*float64(plan.total()))), 256<<20)
	mem1, err := l.remedy(ctx, "the API server", res, rep0, "apiserver-1", sized)
	if err != nil {
		return err
	}
	api1, err := testenv.NewAPIServer(testenv.APIServerConfig{
		Dir: c.dir, Name: "apiserver-1", EtcdURL: etcd.URL, Credentials: c.creds, Memory: mem1, Args: apiserverArgs(),
	})
	if err != nil {
		return err
	}
	l.runReplica(ctx, newReplica(l, "apiserver-1", c.name, api1, mem1))
	if err := gw.SetUpstreams(c.api.URL, api1.URL); err != nil {
		return err
	}
	l.tl.add(evRemedy, "", "REMEDY: memory limit raised from %s to %s, a second replica apiserver-1 started and added to the gateway", mib(limit), mib(l.remedyLimit))
	if err := l.startExporter(c.name+"-apiserver-1", labels, append(memoryArgs("apiserver-1", api1.URL+"/metrics", c.tokenFile, mem1), "--no-exporter.nodelease")...); err != nil {
		return err
	}
	return l.finishIncident(ctx, deployed, res)
}

// remedy waits for the first OOM kill of what, then RemedyAfter, and
// raises rep's limit to the remedy's (RemedyLimit, or sized); it returns a
// memory limit at the same value for the second replica, named second.
func (l *lab) remedy(ctx context.Context, what string, res *deployResult, rep *replica, second string, sized int64) (testenv.MemoryLimit, error) {
	if !waitUntil(ctx, 5*time.Minute, func() bool { return !l.tl.first(evFirstOOM, "*").IsZero() }) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the deployments (%d accepted) did not run %s out of memory within 5 minutes", res.accepted.Load(), what)
	}
	if !sleep(ctx, l.opts.RemedyAfter) {
		return nil, ctx.Err()
	}
	l.remedyLimit = cmp.Or(l.opts.RemedyLimit, sized)
	if err := rep.raise(l.remedyLimit); err != nil {
		return nil, err
	}
	return l.memoryLimit(second, l.remedyLimit)
}

// memoryArgs are a memory exporter's flags for one replica: its /metrics
// (for restarts and reachability; with the admin's token where the replica
// is an API server) and its cgroup (for the OOM kill as the kernel counts
// it), when it has one.
func memoryArgs(replica, metricsURL, tokenFile string, mem testenv.MemoryLimit) []string {
	args := []string{"--apimemory.endpoint=" + replica + "=" + metricsURL, "--no-apimemory.pods"}
	if tokenFile != "" {
		args = append(args, "--apimemory.bearer-token-file="+tokenFile, "--apimemory.insecure-skip-tls-verify")
	}
	if mem != nil && mem.CgroupDir() != "" {
		args = append(args, "--apimemory.cgroup="+replica+"="+mem.CgroupDir())
	}
	return args
}

// planDeployments spreads bytes over deployers writing objects of size.
func planDeployments(bytes int64, size, deployers int) deployPlan {
	objects := max(1, int((bytes+int64(size)-1)/int64(size)))
	deployers = min(deployers, objects)
	return deployPlan{Deployers: deployers, Objects: (objects + deployers - 1) / deployers, ObjectBytes: size}
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }

// replicaMemory is a replica's resident set against its limit, for the
// status line.
func replicaMemory(api *testenv.APIServer, mem testenv.MemoryLimit) string {
	pid := api.Pid()
	if pid == 0 {
		return "API server down"
	}
	return fmt.Sprintf("API server %s of %s", mib(residentBytes(pid)), mib(mem.Limit()))
}
