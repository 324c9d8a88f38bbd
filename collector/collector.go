// Package collector gathers Cascade's signals: it scrapes the exporters and
// any other Prometheus targets (static or discovered, Kubernetes included)
// into an embedded, persistent TSDB and, when configured, remote-writes
// everything to a Prometheus-compatible store. It is Prometheus's own scrape,
// discovery, tsdb and storage/remote packages wired together, configured by
// the scrape_configs and remote_write sections of a Prometheus config.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"

	// Service discovery mechanisms users can name in scrape_configs.
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)

// Options are fixed for the life of a collector; the rest comes from the
// configuration and can be reloaded.
type Options struct {
	// DataDir holds the TSDB and the remote-write WAL.
	DataDir string
	// Retention is how long samples are kept on disk.
	Retention time.Duration
	// Registerer receives the collector's own metrics (Prometheus's
	// prometheus_tsdb_*, prometheus_target_*, prometheus_remote_storage_*).
	Registerer prometheus.Registerer
	// SDMetrics are the service discovery metrics, registered once per
	// registry; nil registers them in Registerer.
	SDMetrics map[string]discovery.DiscovererMetrics
	Logger    *slog.Logger
}

// DefaultRetention keeps a day of data: enough for the incident, its
// baselines and a post-incident report.
const DefaultRetention = 24 * time.Hour

// Validate reports the first invalid option.
func (o Options) Validate() error {
	if o.DataDir == "" {
		return errors.New("collector: a data directory is required")
	}
	if o.Retention < time.Hour {
		return fmt.Errorf("collector: retention %s is shorter than an hour, too short for baselines", o.Retention)
	}
	return nil
}

// Collector owns the TSDB and the scrape and discovery loops that fill it.
type Collector struct {
	logger    *slog.Logger
	db        *tsdb.DB
	remote    *remote.Storage
	storage   storage.Storage
	discovery *discovery.Manager
	scrape    *scrape.Manager
	cancelSD  context.CancelFunc

	closeOnce sync.Once
}

// Open opens (or creates) the TSDB in opts.DataDir and prepares scraping.
// Nothing is scraped until ApplyConfig gives targets and Run starts.
func Open(opts Options) (*Collector, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.RetentionDuration = opts.Retention.Milliseconds()
	db, err := tsdb.Open(opts.DataDir, logger.With("component", "tsdb"), reg, tsdbOpts, tsdb.NewDBStats())
	if err != nil {
		return nil, fmt.Errorf("collector: open TSDB in %s: %w", opts.DataDir, err)
	}

	c := &Collector{logger: logger, db: db}
	scrapeGetter := &readyScrapeManager{}
	c.remote = remote.NewStorage(logger.With("component", "remote"), reg, c.startTime, opts.DataDir, time.Minute, scrapeGetter, false)
	// Remote write tails the WAL: told of every commit it sends at once;
	// left alone it reads the WAL only every 15 s, and every sample would
	// reach the store up to 15 s late (and the rules reading it there page
	// that much later).
	db.SetWriteNotified(c.remote)
	c.storage = storage.NewFanout(logger, db, c.remote)

	sdMetrics := opts.SDMetrics
	if sdMetrics == nil {
		if sdMetrics, err = discovery.CreateAndRegisterSDMetrics(reg); err != nil {
			db.Close()
			return nil, fmt.Errorf("collector: discovery metrics: %w", err)
		}
	}
	sdCtx, cancel := context.WithCancel(context.Background())
	c.cancelSD = cancel
	c.discovery = discovery.NewManager(sdCtx, logger.With("component", "discovery"), reg, sdMetrics, discovery.Name("scrape"))
	if c.discovery == nil {
		cancel()
		db.Close()
		return nil, errors.New("collector: cannot create the discovery manager")
	}
	c.scrape, err = scrape.NewManager(&scrape.Options{}, logger.With("component", "scrape"), nil, c.storage, nil, reg)
	if err != nil {
		cancel()
		db.Close()
		return nil, fmt.Errorf("collector: scrape manager: %w", err)
	}
	scrapeGetter.set(c.scrape)
	return c, nil
}

// ApplyConfig applies the scrape_configs and remote_write sections of cfg.
// On error the previous configuration stays in force where it could be kept.
func (c *Collector) ApplyConfig(cfg *config.Config) error {
	if err := c.remote.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("collector: remote_write: %w", err)
	}
	if err := c.scrape.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("collector: scrape_configs: %w", err)
	}
	scrapeConfigs, err := cfg.GetScrapeConfigs()
	if err != nil {
		return fmt.Errorf("collector: scrape_configs: %w", err)
	}
	sd := make(map[string]discovery.Configs, len(scrapeConfigs))
	for _, sc := range scrapeConfigs {
		sd[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := c.discovery.ApplyConfig(sd); err != nil {
		return fmt.Errorf("collector: service discovery: %w", err)
	}
	return nil
}

// Run scrapes until ctx is done, then stops scraping. Close the collector
// afterwards to flush the TSDB.
func (c *Collector) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- c.discovery.Run() }()
	go func() { errc <- c.scrape.Run(c.discovery.SyncCh()) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			c.logger.Error("collector stopped", "err", err)
		}
	}
	c.scrape.Stop()
	c.cancelSD()
	return nil
}

// Storage is where scraped samples go and where rules read and write: the
// TSDB, fanned out to remote write.
func (c *Collector) Storage() storage.Storage { return c.storage }

// DB is the embedded TSDB itself.
func (c *Collector) DB() *tsdb.DB { return c.db }

// Close flushes remote write and closes the TSDB.
func (c *Collector) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cancelSD()
		err = errors.Join(c.remote.Close(), c.db.Close())
	})
	return err
}

// startTime is the oldest sample the TSDB holds, for remote read and write.
func (c *Collector) startTime() (int64, error) {
	var startTime int64 = math.MaxInt64
	if blocks := c.db.Blocks(); len(blocks) > 0 {
		startTime = blocks[0].Meta().MinTime
	}
	return min(startTime, c.db.Head().MinTime()), nil
}

// readyScrapeManager hands remote write the scrape manager once it exists
// (remote write reads target metadata through it).
type readyScrapeManager struct {
	mu sync.RWMutex
	m  *scrape.Manager
}

func (r *readyScrapeManager) set(m *scrape.Manager) {
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
}

func (r *readyScrapeManager) Get() (*scrape.Manager, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.m == nil {
		return nil, errors.New("scrape manager not ready")
	}
	return r.m, nil
}
