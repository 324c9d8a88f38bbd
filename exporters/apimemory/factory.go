package apimemory

import (
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/cascade-sre/cascade/exporters"
)

// Factory registers the API server memory exporter and its flags.
var Factory = exporters.Factory{
	Name:           "apimemory",
	Help:           "Enable the API server memory exporter (cascade_apiserver_*).",
	DefaultEnabled: true,
	Flags:          flags,
}

func flags(app exporters.FlagSet) exporters.Config {
	c := &flagConfig{Config: DefaultConfig()}
	app.Flag("apimemory.endpoint", "API server /metrics endpoint to probe, as [replica=]https://host:port/metrics. Repeatable.").StringsVar(&c.endpoints)
	app.Flag("apimemory.bearer-token-file", "Bearer token sent to the endpoints, read again at each probe.").StringVar(&c.BearerTokenFile)
	app.Flag("apimemory.ca-file", "PEM CA bundle that signs the endpoints' serving certificates.").StringVar(&c.CAFile)
	app.Flag("apimemory.insecure-skip-tls-verify", "Do not verify the endpoints' TLS certificates.").BoolVar(&c.InsecureSkipVerify)
	app.Flag("apimemory.cgroup", "Cgroup (v1 or v2) of a local API server, as replica=/sys/fs/cgroup/... or replica=pid:PID. Repeatable.").StringsVar(&c.cgroups)
	app.Flag("apimemory.proc-root", "Where pid: cgroups are resolved (PROC/PID/cgroup).").Default(c.ProcRoot).StringVar(&c.ProcRoot)
	app.Flag("apimemory.cgroup-root", "Mount point of the cgroup file system (v1 memory hierarchy under it at memory/).").Default(c.CgroupRoot).StringVar(&c.CgroupRoot)
	app.Flag("apimemory.pods", "Watch the status of API server pods (limit, restarts, OOMKilled) through the Kubernetes API.").Default("true").BoolVar(&c.Pods.Enabled)
	app.Flag("apimemory.pods.namespace", "Namespace of the API server pods.").Default(c.Pods.Namespace).StringVar(&c.Pods.Namespace)
	app.Flag("apimemory.pods.selector", "Label selector of the API server pods.").Default(c.Pods.LabelSelector).StringVar(&c.Pods.LabelSelector)
	app.Flag("apimemory.pods.container", "Name of the API server container in those pods.").Default(c.Pods.Container).StringVar(&c.Pods.Container)
	app.Flag("apimemory.poll-interval", "How often endpoints and cgroups are read.").Default(c.PollInterval.String()).DurationVar(&c.PollInterval)
	app.Flag("apimemory.timeout", "Timeout of one endpoint probe.").Default(c.Timeout.String()).DurationVar(&c.Timeout)
	app.Flag("apimemory.forget-after", "How long a replica whose pod was deleted is remembered: re-created within it, its counters continue; after it, they start again. Endpoint and cgroup replicas are never forgotten.").Default(c.ForgetAfter.String()).DurationVar(&c.ForgetAfter)
	return c
}

// flagConfig is the Config the flags fill, with the sources as written.
type flagConfig struct {
	Config
	endpoints, cgroups []string
}

func (c *flagConfig) New(d exporters.Deps) (exporters.Collector, error) {
	var client kubernetes.Interface
	var err error
	if c.Pods.Enabled {
		if client, err = d.Kube(); err != nil {
			return nil, err
		}
	}
	cfg := c.Config
	if cfg.Endpoints, err = exporters.ParseEach("apimemory.endpoint", c.endpoints, ParseEndpointSpec); err != nil {
		return nil, err
	}
	if cfg.Cgroups, err = exporters.ParseEach("apimemory.cgroup", c.cgroups, ParseCgroupSpec); err != nil {
		return nil, err
	}
	e, err := New(cfg, client, d.Logger)
	if err != nil {
		return nil, fmt.Errorf("%w (or turn the exporter off with --no-exporter.apimemory)", err)
	}
	return e, nil
}
