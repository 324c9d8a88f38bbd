package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/exporters"
)

// sharedDesc's family is the caller's too, told apart by a const label, as
// the Loki clients' families are (client="gateway", client="incidents").
var sharedDesc = prometheus.NewDesc("cascade_test_shared_total", "A family the exporter and the caller both have.", nil, prometheus.Labels{"client": "exporter"})

// sharing is an exporter with a family the caller of AddToGroup also has,
// as the gateway exporter's Loki client and cascade run's do.
type sharing struct{}

func (sharing) Describe(ch chan<- *prometheus.Desc) { ch <- sharedDesc }
func (sharing) Update(ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(sharedDesc, prometheus.CounterValue, 1)
	return nil
}

// TestMetricsServeEachFamilyOnce: with the caller's registry (cascade run)
// a family both have is served once with both series; without one
// (cascade exporter) the exporter's. Either way the text parses and
// carries the build info and the exporter's scrape success.
func TestMetricsServeEachFamilyOnce(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	parts := []Part{{Named: exporters.Named{Name: "sharing", Collector: sharing{}}}}
	callers := prometheus.NewCounter(prometheus.CounterOpts{Name: "cascade_test_shared_total", Help: "A family the exporter and the caller both have.", ConstLabels: prometheus.Labels{"client": "caller"}})
	callers.Inc()
	withRegistry := prometheus.NewRegistry()
	withRegistry.MustRegister(callers)

	for name, tc := range map[string]struct {
		reg    *prometheus.Registry
		series int
	}{"with a registry": {withRegistry, 2}, "without": {nil, 1}} {
		t.Run(name, func(t *testing.T) {
			appenders, err := metricsAppenders(parts, tc.reg, logger)
			require.NoError(t, err)
			var gatherer prometheus.Gatherer
			if tc.reg != nil {
				gatherer = tc.reg
			}
			w := httptest.NewRecorder()
			exporters.Handler(gatherer, appenders, exporters.HandlerOpts{}, logger).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			parser := expfmt.NewTextParser(model.LegacyValidation)
			families, err := parser.TextToMetricFamilies(w.Body)
			require.NoError(t, err)
			require.Len(t, families["cascade_test_shared_total"].GetMetric(), tc.series)
			require.Contains(t, families, "cascade_exporter_build_info")
			require.Contains(t, families, "cascade_exporter_scrape_success")
		})
	}
}
