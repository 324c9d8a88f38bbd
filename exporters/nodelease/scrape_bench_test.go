package nodelease

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/cascade-sre/cascade/exporters"
	"github.com/cascade-sre/cascade/internal/coldcache"
	"github.com/cascade-sre/cascade/internal/contract"
	"github.com/cascade-sre/cascade/internal/kube"
)

// BenchmarkScrape compares a full HTTP scrape of the exporter holding N
// leases and nodes with a bare client_golang registry serving the same
// series (the floor). The bench command under hack/bench/exporter measures
// the same against a real API server; this one isolates the scrape path.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run("exporter/"+strconv.Itoa(n), func(b *testing.B) {
			e := filledExporter(b, n)
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectorFunc{e})
			h := exporters.Handler(reg, []exporters.TextAppender{e}, exporters.HandlerOpts{Gzip: true}, slog.New(slog.DiscardHandler))
			benchScrape(b, h, false)
		})
		b.Run("floor/"+strconv.Itoa(n), func(b *testing.B) {
			benchScrape(b, promhttp.HandlerFor(floorRegistry(n), promhttp.HandlerOpts{}), false)
		})
		// As the exporter's server serves it, by default (plain text)
		// and with --web.enable-gzip; then the same with the caches
		// emptied before each scrape, as the work of other processes
		// between two scrapes seconds apart empties them: the figures
		// the bench's latencies follow.
		for _, gz := range []bool{false, true} {
			name := "served"
			if gz {
				name += "-gzip"
			}
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				benchScrape(b, servedHandler(b, n, gz), false)
			})
			b.Run(name+"-cold/"+strconv.Itoa(n), func(b *testing.B) {
				benchScrape(b, servedHandler(b, n, gz), true)
			})
		}
	}
}

// servedHandler serves an exporter of n nodes as exporters/server does:
// the exporter set and the build info, the Go runtime's and the process's
// series and the per-node families, all as text, compressed if gz is set.
func servedHandler(b *testing.B, n int, gz bool) http.Handler {
	logger := slog.New(slog.DiscardHandler)
	e := filledExporter(b, n)
	own, err := exporters.NewCollectorText(logger,
		exporters.NewSet(logger, exporters.Named{Name: "nodelease", Collector: e}),
		versioncollector.NewCollector("cascade_exporter"))
	if err != nil {
		b.Fatal(err)
	}
	appenders := []exporters.TextAppender{own, exporters.NewGoRuntime(), exporters.NewProcessMetrics(), e}
	return exporters.Handler(nil, appenders, exporters.HandlerOpts{Gzip: gz}, logger)
}

// benchScrape times scrapes of h, which are asked for gzip as Prometheus
// asks; when cold is set, it empties the caches before each, outside the
// timing.
func benchScrape(b *testing.B, h http.Handler, cold bool) {
	b.ReportAllocs()
	for b.Loop() {
		if cold {
			coldcache.EvictUntimed(b)
		}
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
		sent, _ := io.Copy(io.Discard, w.Body)
		b.ReportMetric(float64(sent), "body-bytes")
	}
}

// filledExporter returns an exporter holding n leases and n nodes, fed
// through its event handlers as the reflectors would.
func filledExporter(b *testing.B, n int) *Exporter {
	// The client is never used: the reflectors do not run.
	client, err := kube.NewClientForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(DefaultConfig(), client, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	forty := int32(40)
	for i := range n {
		name := "ip-10-0-" + strconv.Itoa(i/256) + "-" + strconv.Itoa(i%256) + ".eu-west-1.compute.internal"
		e.onLease(&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{
				LeaseDurationSeconds: &forty,
				// Renewed at any microsecond, as the API server
				// records it, within the last 40 s.
				RenewTime: &metav1.MicroTime{Time: now.Add(-time.Duration(i*7919%40_000_000) * time.Microsecond).Truncate(time.Microsecond)},
			},
		})
		node := slimNode(&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		})
		e.onNode(node)
	}
	return e
}

// floorRegistry serves the same per-node series from plain GaugeVecs.
func floorRegistry(n int) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	renew := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: contract.NodeLeaseRenewTimestamp.Name, Help: "h"}, []string{"node"})
	dur := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: contract.NodeLeaseDuration.Name, Help: "h"}, []string{"node"})
	leases := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: contract.NodeLeases.Name, Help: "h"}, []string{"state"})
	reg.MustRegister(renew, dur, leases)
	now := float64(time.Now().UnixNano()) / 1e9
	for i := range n {
		name := "ip-10-0-" + strconv.Itoa(i/256) + "-" + strconv.Itoa(i%256) + ".eu-west-1.compute.internal"
		renew.WithLabelValues(name).Set(now - float64(i%40))
		dur.WithLabelValues(name).Set(40)
	}
	for _, s := range stateNames {
		leases.WithLabelValues(s).Set(1)
	}
	return reg
}
