package exporters

import (
	"bytes"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
)

// textTestCollectors are collectors of every kind of family, with const
// labels and label values that need escaping.
func textTestCollectors() []prometheus.Collector {
	gauges := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cascade_test_gauge", Help: `A gauge with "quotes" and a \ in its help.`}, []string{"node", "state"})
	gauges.WithLabelValues(`a"b\c`+"\nd", "ready").Set(1.5)
	gauges.WithLabelValues("n2", "late").Set(-3e-7)
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cascade_test_total", Help: "A counter.", ConstLabels: prometheus.Labels{"exporter": "x"}}, []string{"source"})
	counter.WithLabelValues("probe").Add(42)
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cascade_test_seconds", Help: "A histogram.", Buckets: []float64{0.005, 0.1, 1}}, []string{"route"})
	for _, v := range []float64{0.001, 0.05, 0.5, 7} {
		hist.WithLabelValues("/api").Observe(v)
	}
	summary := prometheus.NewSummary(prometheus.SummaryOpts{Name: "cascade_test_summary_seconds", Help: "A summary.", Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}})
	summary.Observe(0.2)
	untyped := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "cascade_test_untyped", Help: "Untyped."}, func() float64 { return 7 })
	return []prometheus.Collector{gauges, counter, hist, summary, untyped, versioncollector.NewCollector("cascade_test")}
}

// TestCollectorTextMatchesTheRegistry: the same families, types, labels
// and values as a Registry gathers, read back by Prometheus's text parser.
func TestCollectorTextMatchesTheRegistry(t *testing.T) {
	collectors := textTestCollectors()
	ct, err := NewCollectorText(slog.New(slog.DiscardHandler), collectors...)
	require.NoError(t, err)
	text := ct.AppendText(nil)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	got, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "%s", text)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors...)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, got, len(mfs), "%s", text)
	for _, want := range mfs {
		g, ok := got[want.GetName()]
		require.True(t, ok, "%s missing from\n%s", want.GetName(), text)
		require.Equal(t, want.GetHelp(), g.GetHelp(), want.GetName())
		require.Equal(t, want.GetType(), g.GetType(), want.GetName())
		require.Equal(t, canonical(t, want), canonical(t, g), want.GetName())
	}
}

// canonical is a family's samples as text, sorted, without what the text
// format does not carry (created timestamps, exemplars).
func canonical(t *testing.T, mf *dto.MetricFamily) []string {
	var buf bytes.Buffer
	for _, m := range mf.Metric {
		if m.Counter != nil {
			m.Counter.CreatedTimestamp, m.Counter.Exemplar = nil, nil
		}
		if m.Histogram != nil {
			m.Histogram.CreatedTimestamp = nil
		}
		if m.Summary != nil {
			m.Summary.CreatedTimestamp = nil
		}
	}
	_, err := expfmt.MetricFamilyToText(&buf, mf)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	slices.Sort(lines)
	return lines
}

// undescribed sends a metric it did not describe.
type undescribed struct{ prometheus.Collector }

func (u undescribed) Collect(ch chan<- prometheus.Metric) {
	u.Collector.Collect(ch)
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("cascade_test_stray", "Stray.", nil, nil), prometheus.GaugeValue, 1)
}

func TestCollectorTextLeavesOutUndescribedMetrics(t *testing.T) {
	logger, logs := logtest.New()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cascade_test_gauge", Help: "A gauge."})
	ct, err := NewCollectorText(logger, undescribed{g})
	require.NoError(t, err)
	text := string(ct.AppendText(nil))
	require.Contains(t, text, "cascade_test_gauge 0\n")
	require.NotContains(t, text, "stray")
	require.Contains(t, logs.String(), "did not describe")
}

func TestCollectorTextRefusesAnInvalidDescriptor(t *testing.T) {
	bad := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cascade test gauge", Help: "Not a valid name."})
	_, err := NewCollectorText(slog.New(slog.DiscardHandler), bad)
	require.Error(t, err)
}

// TestCollectorTextKeepsItsBuffers: a scrape of the exporters' own families
// allocates a tenth of what a Registry's Gather did (two channels of a
// thousand metrics, 32 KB, before anything else).
func TestCollectorTextKeepsItsBuffers(t *testing.T) {
	ct, err := NewCollectorText(slog.New(slog.DiscardHandler), textTestCollectors()...)
	require.NoError(t, err)
	var b []byte
	b = ct.AppendText(b[:0])
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		b = ct.AppendText(b[:0])
	}
	runtime.ReadMemStats(&after)
	perScrape := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("%d bytes allocated per scrape", perScrape)
	require.Less(t, perScrape, uint64(3200))
}
