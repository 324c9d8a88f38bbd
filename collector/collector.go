// Package collector gathers Cascade's signals: it scrapes the exporters and
// any other Prometheus targets (static or discovered, Kubernetes included)
// into an embedded, persistent TSDB and, when configured, remote-writes
// everything to a Prometheus-compatible store. It is Prometheus's own scrape,
// discovery, tsdb and storage/remote packages wired together, configured by
// the scrape_configs and remote_write sections of a Prometheus config.
package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/logging"

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
	// StorageCheckInterval is how often Run checks that the data directory
	// is still the one the TSDB opened and still takes a write; zero means
	// DefaultStorageCheckInterval.
	StorageCheckInterval time.Duration
	Logger               *slog.Logger
}

// DefaultStorageCheckInterval bounds how long the collector runs on a data
// directory that was removed, replaced or made read-only before it stops.
const DefaultStorageCheckInterval = 10 * time.Second

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
	if o.StorageCheckInterval < 0 {
		return fmt.Errorf("collector: storage check interval %s is negative", o.StorageCheckInterval)
	}
	return nil
}

// Collector owns the TSDB and the scrape and discovery loops that fill it.
type Collector struct {
	logger    *slog.Logger
	dataDir   string
	dataInfo  os.FileInfo // of dataDir when the TSDB opened it
	checkEach time.Duration
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

	dataInfo, err := os.Stat(opts.DataDir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("collector: %w", err)
	}
	c := &Collector{logger: logger, dataDir: opts.DataDir, dataInfo: dataInfo, db: db,
		checkEach: cmp.Or(opts.StorageCheckInterval, DefaultStorageCheckInterval)}
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
	// Prometheus's JSON file logger, as in Prometheus, for the scrape
	// failures of the jobs that name a scrape_failure_log_file.
	c.scrape, err = scrape.NewManager(&scrape.Options{}, logger.With("component", "scrape"), logging.NewJSONFileLogger, c.storage, nil, reg)
	if err != nil {
		cancel()
		db.Close()
		return nil, fmt.Errorf("collector: scrape manager: %w", err)
	}
	scrapeGetter.set(c.scrape)
	return c, nil
}

// ApplyConfig applies the scrape_configs, scrape_config_files and
// remote_write sections of cfg, and the global scrape settings (including
// scrape_failure_log_file).
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

// Run scrapes until ctx is done, then stops scraping; close the collector
// afterwards to flush the TSDB. It returns an error, having stopped scraping,
// when a part of it fails on its own: the discovery or scrape manager ends,
// or the data directory is removed, replaced or stops taking writes. The
// TSDB itself only logs such failures (its WAL file stays open, so writes
// seem to succeed until the next block is cut), and a collector that goes on
// scraping into a directory that is gone loses everything at its next start:
// better to stop, loudly, so the supervisor restarts it.
func (c *Collector) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- managerStopped("discovery", c.discovery.Run()) }()
	go func() { errc <- managerStopped("scrape", c.scrape.Run(c.discovery.SyncCh())) }()
	check := time.NewTicker(c.checkEach)
	defer check.Stop()
	var err error
	for err == nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case err = <-errc:
		case <-check.C:
			err = c.checkStorage()
		}
	}
	c.scrape.Stop()
	c.cancelSD()
	return err
}

func managerStopped(name string, err error) error {
	if err != nil {
		return fmt.Errorf("collector: the %s manager stopped: %w", name, err)
	}
	return fmt.Errorf("collector: the %s manager stopped unexpectedly", name)
}

// storageCheckFile is created and removed in the data directory by each
// storage check; the TSDB ignores files it does not know.
const storageCheckFile = ".cascade-storage-check"

// checkStorage reports whether the data directory is still the one the
// TSDB opened and still takes a synced write.
func (c *Collector) checkStorage() error {
	fail := func(err error) error {
		return fmt.Errorf("collector: the data directory %s fails: %w", c.dataDir, err)
	}
	fi, err := os.Stat(c.dataDir)
	if err != nil {
		return fail(err)
	}
	if !os.SameFile(fi, c.dataInfo) {
		return fail(errors.New("it was replaced after the TSDB opened it"))
	}
	path := filepath.Join(c.dataDir, storageCheckFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fail(err)
	}
	_, err = f.Write([]byte("ok\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	if err != nil {
		return fail(err)
	}
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
