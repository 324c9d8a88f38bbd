// Package exporters holds what every Cascade exporter shares: the small
// Collector interface each exporter implements, and the wrapper that serves a
// set of them as one Prometheus collector reporting each one's scrape duration
// and success, in the manner of node_exporter.
package exporters

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sre/cascade/internal/contract"
)

// Collector is one exporter: it writes its current metrics to ch on every
// scrape. Update must be cheap and must not block on the network: exporters
// that watch or poll something do so in Run and serve their last view here.
type Collector interface {
	// Describe sends the descriptors of every metric Update may send.
	Describe(ch chan<- *prometheus.Desc)
	// Update sends the current metrics. An error marks the scrape of this
	// exporter as failed; whatever it sent before the error is still served.
	Update(ch chan<- prometheus.Metric) error
}

// Runner is implemented by exporters with background work (watches,
// pollers). Run blocks until ctx is done and returns nil then; an error means
// the exporter could not start at all.
type Runner interface {
	Run(ctx context.Context) error
}

// Named pairs an exporter with the name used in its flags and in the
// cascade_exporter_* self-metrics.
type Named struct {
	Name      string
	Collector Collector
}

var (
	scrapeDurationDesc = contract.ExporterScrapeDuration.Desc()
	scrapeSuccessDesc  = contract.ExporterScrapeSuccess.Desc()
)

// Set serves several exporters as one prometheus.Collector. Each exporter is
// updated concurrently; a failing one is logged and reported through
// cascade_exporter_scrape_success without hiding the others.
type Set struct {
	exporters []Named
	logger    *slog.Logger
}

// NewSet returns a Set over the given exporters.
func NewSet(logger *slog.Logger, exporters ...Named) *Set {
	return &Set{exporters: exporters, logger: logger}
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	ch <- scrapeDurationDesc
	ch <- scrapeSuccessDesc
	for _, e := range s.exporters {
		e.Collector.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for _, e := range s.exporters {
		wg.Go(func() { s.update(e, ch) })
	}
	wg.Wait()
}

func (s *Set) update(e Named, ch chan<- prometheus.Metric) {
	start := time.Now()
	err := e.Collector.Update(ch)
	success := 1.0
	if err != nil {
		success = 0
		s.logger.Error("exporter update failed", "exporter", e.Name, "err", err)
	}
	ch <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), e.Name)
	ch <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, success, e.Name)
}
