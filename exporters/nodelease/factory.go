package nodelease

import "github.com/cascade-sre/cascade/exporters"

// Factory registers the node lease exporter and its flags.
var Factory = exporters.Factory{
	Name:           "nodelease",
	Help:           "Enable the node lease exporter (cascade_node_*).",
	DefaultEnabled: true,
	Flags:          flags,
}

func flags(app exporters.FlagSet) exporters.Config {
	c := &flagConfig{DefaultConfig()}
	app.Flag("nodelease.namespace", "Namespace of the node Leases.").Default(c.Namespace).StringVar(&c.Namespace)
	app.Flag("nodelease.per-node-series", "Export renew time and duration per node. Turn off (--no-nodelease.per-node-series) for very large fleets; the aggregate series stay.").
		Default("true").BoolVar(&c.PerNodeSeries)
	app.Flag("nodelease.probe-interval", "How often to check that the API server still answers the exporter; 0 turns the probe off.").
		Default(c.ProbeInterval.String()).DurationVar(&c.ProbeInterval)
	app.Flag("nodelease.probe-timeout", "Timeout of one probe; at most the probe interval.").
		Default(c.ProbeTimeout.String()).DurationVar(&c.ProbeTimeout)
	return c
}

// flagConfig is the Config the flags fill.
type flagConfig struct{ Config }

func (c *flagConfig) New(d exporters.Deps) (exporters.Collector, error) {
	client, err := d.Kube()
	if err != nil {
		return nil, err
	}
	return New(c.Config, client, d.Logger)
}
