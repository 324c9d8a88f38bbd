package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/cascade-sre/cascade/internal/atomicfile"
	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
)

// tokenReviewPath is where the API servers send TokenReviews; the regional
// API serves it (lab/regionalapi).
const tokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// The region's shared components, by their shared label: the regional API
// the page must name, and the gateway in front of it.
const (
	sharedAPI     = "regional-api"
	sharedGateway = "regional-gateway"
)

// Sizing of the regional API (lab/regionalapi): a deployment in progress
// holds its manifests and their rendering, twice its size.
const (
	regionalAPILimit  = 160 << 20
	manifestBytes     = 512 << 10
	regionalRollout   = 5 * time.Minute
	regionalDeployers = 30
)

// regionalAPI is one replica of the lab's regional API, started under its
// memory limit; it serves once its journal is replayed.
type regionalAPI struct {
	name, bin, dir string
	url            string
	args           []string
	mem            testenv.MemoryLimit

	mu   sync.Mutex
	proc *testenv.Process
}

func (r *regionalAPI) Start(timeout time.Duration) error {
	p, err := r.mem.StartProcess(r.dir, r.name, r.bin, r.args...)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	if err := waitHTTP(p, r.url+"/readyz", timeout); err != nil {
		p.Kill()
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}

func (r *regionalAPI) Process() *testenv.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// buildRegionalAPI builds lab/regionalapi into the work dir.
func (l *lab) buildRegionalAPI() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(l.dir, "bin", "regional-api")
	cmd := exec.Command("go", "build", "-o", bin, "./lab/regionalapi")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./lab/regionalapi: %w\n%s", err, out)
	}
	return bin, nil
}

// newRegionalAPI prepares a replica on a free port.
func (l *lab) newRegionalAPI(name, bin, tokens, stateDir string, mem testenv.MemoryLimit) (*regionalAPI, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &regionalAPI{
		name: name, bin: bin, dir: filepath.Dir(stateDir), url: "http://" + addr, mem: mem,
		args: []string{"--listen=" + addr, "--tokens=" + tokens, "--state.dir=" + stateDir, "--rollout=" + regionalRollout.String()},
	}, nil
}

// writeWebhookConfig writes the kubeconfig-format file kube-apiserver's
// webhook token authenticator reads: the regional API, through its
// gateway. No credentials: the gateway is plain HTTP on loopback, and
// client-go sends a kubeconfig's credentials only over TLS.
func writeWebhookConfig(path, url string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["regional-api"] = &clientcmdapi.Cluster{Server: url}
	cfg.AuthInfos["kube-apiserver"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "regional-api", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "webhook"
	return clientcmd.WriteToFile(*cfg, path)
}

// runRegionShape is the region shape: clusters whose kubelets authenticate
// through a shared regional API that runs out of memory.
func (l *lab) runRegionShape(ctx context.Context) error {
	o := l.opts
	etcd, err := l.startEtcd()
	if err != nil {
		return err
	}

	// The regional API's node credentials: every node of every cluster.
	regDir := filepath.Join(l.dir, "regional-api")
	stateDir := filepath.Join(regDir, "journal")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	var clusters []*labCluster
	var tokens strings.Builder
	for i := range o.Clusters {
		name := fmt.Sprintf("cluster-%d", i+1)
		nodes, err := nodeIdentities(name+"-", o.Nodes)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			fmt.Fprintf(&tokens, "%s %s\n", n.Token, n.Name)
		}
		c, err := l.newCluster(name, nodes, false)
		if err != nil {
			return err
		}
		clusters = append(clusters, c)
	}
	tokensFile := filepath.Join(regDir, "node-tokens")
	if err := atomicfile.WriteFile(tokensFile, []byte(tokens.String()), 0o600); err != nil {
		return err
	}
	bin, err := l.buildRegionalAPI()
	if err != nil {
		return err
	}
	limit := o.MemoryLimit
	if limit == 0 {
		limit = regionalAPILimit
	}
	mem0, err := l.memoryLimit("regional-api-0", limit)
	if err != nil {
		return err
	}
	l.limit, l.killMechanism = limit, mem0.Describe()
	fmt.Fprintf(l.out, "lab: the regional API runs under a %s limit; what kills it there: %s\n", mib(limit), mem0.Describe())
	reg0, err := l.newRegionalAPI("regional-api-0", bin, tokensFile, stateDir, mem0)
	if err != nil {
		return err
	}
	rep0 := l.runReplica(ctx, newReplica(l, "regional-api-0", "", reg0, mem0))
	if !waitUntil(ctx, time.Minute, rep0.isUp) {
		return fmt.Errorf("regional-api-0 did not start")
	}
	gw, err := testenv.StartNginx(filepath.Join(l.dir, "gateway"), reg0.url, testenv.NginxOptions{WorkerConnections: 8192})
	if err != nil {
		return err
	}
	l.atExit(gw.Stop)
	l.gateway = newGatewayRate(gw.AccessLog)
	go l.gateway.run(ctx)

	for _, c := range clusters {
		webhook := filepath.Join(c.dir, "token-webhook.kubeconfig")
		if err := writeWebhookConfig(webhook, gw.URL+tokenReviewPath); err != nil {
			return err
		}
		c.api, err = testenv.NewAPIServer(testenv.APIServerConfig{
			Dir: c.dir, Name: "apiserver", EtcdURL: etcd.URL, EtcdPrefix: "/registry-" + c.name, Credentials: c.creds,
			Args: apiserverArgs(
				"--authentication-token-webhook-config-file="+webhook,
				"--authentication-token-webhook-version=v1",
				"--authentication-token-webhook-cache-ttl="+o.WebhookCacheTTL.String(),
			),
		})
		if err != nil {
			return err
		}
		if err := c.api.Start(3 * time.Minute); err != nil {
			return err
		}
		l.atExit(c.api.Stop)
		if err := l.startControlPlaneSide(ctx, c); err != nil {
			return err
		}
	}
	if err := l.startAlerting(); err != nil {
		return err
	}
	for _, c := range clusters {
		if err := l.startExporter(c.name, map[string]string{rules.RegionLabel: Region, rules.ClusterLabel: c.name},
			append(memoryArgs("apiserver", c.api.URL+"/metrics", c.tokenFile, nil), "--kubeconfig="+c.kubeconfig)...); err != nil {
			return err
		}
	}
	sharedLabels := map[string]string{rules.RegionLabel: Region, rules.SharedLabel: sharedAPI}
	if err := l.startExporter("regional-api-0", sharedLabels, append(memoryArgs("regional-api-0", reg0.url+"/metrics", "", mem0), "--no-exporter.nodelease")...); err != nil {
		return err
	}
	if err := l.startExporter("regional-gateway", map[string]string{rules.RegionLabel: Region, rules.SharedLabel: sharedGateway},
		"--no-exporter.nodelease", "--no-exporter.apimemory", "--exporter.gateway", "--gateway.log=nginx-json:"+gw.AccessLog); err != nil {
		return err
	}
	if err := l.startCascadeRun(ctx); err != nil {
		return err
	}
	go l.followNotifications(ctx)
	for _, c := range clusters {
		l.startFleet(ctx, c, c.api.URL)
		l.checks = append(l.checks, rejectedCheck(l, c))
	}
	if err := l.awaitFleetReady(ctx, o.Clusters*o.Nodes); err != nil {
		return err
	}
	go l.watch(ctx)
	go l.status(ctx, func() string {
		pid := 0
		if p := reg0.Process(); p != nil && !p.Exited() {
			pid = p.Pid()
		}
		if pid == 0 {
			return "regional API down"
		}
		return fmt.Sprintf("regional API %s of %s", mib(residentBytes(pid)), mib(mem0.Limit()))
	})

	if !sleep(ctx, o.Baseline) {
		return ctx.Err()
	}
	var names []string
	for _, c := range clusters {
		names = append(names, c.name)
	}
	// Each deployment holds twice its manifests: the fault's burst holds
	// 1.5 times the limit, the dry run's a tenth of it.
	plan := planDeployments(limit*3/4, manifestBytes, regionalDeployers)
	if o.DryRun {
		plan = planDeployments(limit/20, manifestBytes, 10)
	}
	for _, obs := range l.observers {
		obs.arm()
	}
	if o.DryRun {
		l.tl.add(evDeploy, "", "dry run: deployments within the regional API's limit: %s", plan)
	} else {
		l.tl.add(evFault, "", "FAULT injected: simultaneous deployments to the regional API through its gateway: %s", plan)
	}
	res, deployed := deploy(ctx, plan, regionalWriter(gw.URL, names))
	if o.DryRun {
		lost := clusters[0].nodes[0].Name
		clusters[0].fleet.StopNode(lost)
		clusters[0].obs.lose(lost)
		l.tl.add(evNodeLost, clusters[0].name, "dry run: node %s lost (its kubelet stopped)", lost)
		return l.finishDryRun(ctx, deployed, res)
	}
	mem1, err := l.remedy(ctx, "the regional API", res, rep0, "regional-api-1", roundUp(max(4*limit, 6*plan.total()), 256<<20))
	if err != nil {
		return err
	}
	reg1, err := l.newRegionalAPI("regional-api-1", bin, tokensFile, stateDir, mem1)
	if err != nil {
		return err
	}
	l.runReplica(ctx, newReplica(l, "regional-api-1", "", reg1, mem1))
	if err := gw.SetUpstreams(reg0.url, reg1.url); err != nil {
		return err
	}
	l.tl.add(evRemedy, "", "REMEDY: the regional API's memory limit raised from %s to %s, a second replica regional-api-1 started and added to the gateway", mib(limit), mib(l.remedyLimit))
	if err := l.startExporter("regional-api-1", sharedLabels, append(memoryArgs("regional-api-1", reg1.url+"/metrics", "", mem1), "--no-exporter.nodelease")...); err != nil {
		return err
	}
	return l.finishIncident(ctx, deployed, res)
}

// rejectedCheck records when a cluster's kubelets first get 401 from their
// own API server after the fault.
func rejectedCheck(l *lab, c *labCluster) func(time.Time) {
	done, before := false, int64(-1)
	return func(now time.Time) {
		if done || l.tl.first(evFault, "*").IsZero() {
			return
		}
		n := c.fleet.Responses()[401]
		switch {
		case before < 0:
			before = n
		case n > before:
			done = true
			l.tl.addAt(now, evKubelets401, c.name, "kubelets get 401 Unauthorized from their own API server (the token webhook fails)")
		}
	}
}
