package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveFloor is the floor: the least any Go exporter can spend serving the
// exporter's series. It is a bare client_golang registry holding plain
// GaugeVecs with the same metric names and labels as `cascade exporter` for
// the given number of nodes, plus the same Go, process and build-info
// collectors, served by promhttp (without its own handler metrics, which the
// exporter does not serve either).
// Nothing else runs in the process: no informers, no events, no updates.
func serveFloor(nodes int, listen string) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(floorRegistry(nodes), promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 40,
	}))
	return serveLoopback(listen, mux)
}

// staticBody is all the static target serves.
const staticBody = "cascade_bench_static 1\n"

// serveStatic is the static target: a Go HTTP server answering one fixed
// line. Its latency is what the machine, the loopback and the scraper cost
// by themselves in the same rounds; no exporter's can be below it, and the
// slowest of its scrapes show how much of every target's tail is the
// machine's.
func serveStatic(listen string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(staticBody))
	})
	return serveLoopback(listen, mux)
}

// serveLoopback serves h on listen, a loopback address, until SIGINT or
// SIGTERM.
func serveLoopback(listen string, h http.Handler) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen=%s: the bench's own targets listen on loopback only", listen)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// floorRegistry fills a registry with the exporter's series for a healthy
// fleet of n nodes whose leases are all fresh.
func floorRegistry(n int) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}

	renew := gauge("cascade_node_lease_renew_timestamp_seconds", "When the node last renewed its lease, as a Unix time.", "node")
	duration := gauge("cascade_node_lease_duration_seconds", "The lease's leaseDurationSeconds.", "node")
	now := time.Now()
	for i := range n {
		// Renewals spread over the period, with sub-second precision as the
		// exporter writes them.
		at := now.Add(-time.Duration(i) * renewPeriod / time.Duration(n))
		renew.WithLabelValues(nodeName(i)).Set(float64(at.UnixNano()) / 1e9)
		duration.WithLabelValues(nodeName(i)).Set(leaseDuration)
	}

	leases := gauge("cascade_node_leases", "Node leases by state.", "state")
	leases.WithLabelValues("fresh").Set(float64(n))
	leases.WithLabelValues("late").Set(0)
	leases.WithLabelValues("expired").Set(0)
	nodes := gauge("cascade_nodes", "Nodes by Ready condition.", "condition")
	nodes.WithLabelValues("ready").Set(float64(n))
	nodes.WithLabelValues("not_ready").Set(0)
	nodes.WithLabelValues("unknown").Set(0)
	gauge("cascade_node_lease_watch_up", "1 while the lease watch is healthy.").WithLabelValues().Set(1)
	gauge("cascade_node_lease_watch_last_event_timestamp_seconds", "When the lease watch last delivered an event.").
		WithLabelValues().Set(float64(now.UnixNano()) / 1e9)

	watchErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cascade_node_lease_watch_errors_total", Help: "Errors of the list, watch and probe calls, by resource.",
	}, []string{"resource"})
	reg.MustRegister(watchErrors)
	for _, r := range []string{"leases", "nodes", "probe"} {
		watchErrors.WithLabelValues(r)
	}
	gauge("cascade_exporter_scrape_duration_seconds", "Time the exporter took to produce its metrics.", "exporter").
		WithLabelValues("nodelease").Set(0)
	gauge("cascade_exporter_scrape_success", "1 if the exporter produced its metrics without error.", "exporter").
		WithLabelValues("nodelease").Set(1)

	reg.MustRegister(
		versioncollector.NewCollector("cascade_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
