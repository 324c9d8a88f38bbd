package nodelease

import (
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// nodeGauge is a per-node gauge built once when its lease is first seen and
// sent as is on every scrape: its label pair is shared, so a scrape of
// thousands of nodes allocates no labels, and its value is updated in place.
type nodeGauge struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	bits   atomic.Uint64 // math.Float64bits of the value
}

func newNodeGauge(desc *prometheus.Desc, node string) *nodeGauge {
	return &nodeGauge{
		desc:   desc,
		labels: []*dto.LabelPair{{Name: proto.String("node"), Value: proto.String(node)}},
	}
}

func (g *nodeGauge) set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Desc implements prometheus.Metric.
func (g *nodeGauge) Desc() *prometheus.Desc { return g.desc }

// Write implements prometheus.Metric. The registry only reads the labels.
func (g *nodeGauge) Write(out *dto.Metric) error {
	v := math.Float64frombits(g.bits.Load())
	out.Label = g.labels
	out.Gauge = &dto.Gauge{Value: &v}
	return nil
}
