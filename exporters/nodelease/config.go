package nodelease

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Config configures the node lease exporter.
type Config struct {
	// Namespace holds the node Leases; the kubelet uses kube-node-lease.
	Namespace string
	// PerNodeSeries exports cascade_node_lease_renew_timestamp_seconds and
	// cascade_node_lease_duration_seconds for every node. Very large fleets
	// can switch them off; the aggregate series stay.
	PerNodeSeries bool
	// ProbeInterval is how often the exporter checks that the API still
	// answers it, so a hung (not only a dead) API server shows as a broken
	// watch. Zero disables the probe.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe.
	ProbeTimeout time.Duration
}

// DefaultConfig returns the defaults the command's flags start from.
func DefaultConfig() Config {
	return Config{
		Namespace:     "kube-node-lease",
		PerNodeSeries: true,
		ProbeInterval: 5 * time.Second,
		ProbeTimeout:  4 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Namespace == "" {
		return errors.New("nodelease: namespace must not be empty")
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("nodelease: namespace %q: %s", c.Namespace, errs[0])
	}
	if c.ProbeInterval < 0 {
		return fmt.Errorf("nodelease: probe interval %s must not be negative", c.ProbeInterval)
	}
	if c.ProbeInterval > 0 && (c.ProbeTimeout <= 0 || c.ProbeTimeout > c.ProbeInterval) {
		return fmt.Errorf("nodelease: probe timeout %s must be positive and at most the probe interval %s", c.ProbeTimeout, c.ProbeInterval)
	}
	return nil
}
