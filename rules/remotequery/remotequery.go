// Package remotequery lets the rule engine read series from a remote
// Prometheus-compatible query API (Prometheus, Mimir, Thanos,
// VictoriaMetrics) instead of the embedded TSDB.
//
// A Client is a storage.Queryable: each Select becomes one HTTP query at the
// selector's end time. An instant selector of an instant evaluation (what a
// rule's `foo` is) is sent as the instant query `{matchers}`, so the store
// decides with its own staleness handling which series are present, and each
// comes back as one sample at that time. Every other selector (ranges such as
// `rate(foo[1m])`, subqueries, `timestamp(foo)`) is sent as the range
// selector `{matchers}[<end-start+1>ms]`, which every one of those stores
// answers with the raw samples of [start, end].
//
// Split routes each selector to the local TSDB or to the remote store by
// metric name, so the rules' own outputs (recording rules, ALERTS) are read
// where they are written, right after they are written, and never twice.
//
// Every failure (store down, HTTP error status, a body that is not a
// query-API answer, a timeout, an answer of the wrong shape) comes back as
// the Select's error: the rule evaluation fails and is counted in
// prometheus_rule_evaluation_failures_total, never evaluated on nothing.
package remotequery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// DefaultTimeout bounds each HTTP query when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config says where the query API is and how to reach it.
type Config struct {
	// URL is the API's base: the address of /api/v1/query without that
	// suffix, e.g. http://prometheus:9090, http://mimir/prometheus,
	// http://vmselect:8481/select/0/prometheus.
	URL string
	// Timeout bounds each query; zero is DefaultTimeout.
	Timeout time.Duration
	// HTTPClient holds TLS, authentication, proxy and headers
	// (X-Scope-OrgID for Mimir), as in any Prometheus HTTP client.
	HTTPClient config.HTTPClientConfig
	// Lookback is the engine's lookback delta: a selector reaching exactly
	// that far back from an instant evaluation is an instant selector.
	Lookback time.Duration
	// Registerer receives the client's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Client reads series from a remote query API.
type Client struct {
	api      v1.API
	timeout  time.Duration
	lookback time.Duration
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

// New checks cfg and builds a client; nothing is sent until a Select.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("remote query: URL %q: want http(s)://host[:port][/path]", cfg.URL)
	}
	if err := cfg.HTTPClient.Validate(); err != nil {
		return nil, fmt.Errorf("remote query: %w", err)
	}
	hc, err := config.NewClientFromConfig(cfg.HTTPClient, "cascade_remote_query")
	if err != nil {
		return nil, fmt.Errorf("remote query: %w", err)
	}
	hc.Transport = noCache{hc.Transport}
	ac, err := api.NewClient(api.Config{Address: strings.TrimSuffix(cfg.URL, "/"), Client: hc})
	if err != nil {
		return nil, fmt.Errorf("remote query: %w", err)
	}
	c := &Client{
		api:      v1.NewAPI(ac),
		timeout:  cfg.Timeout,
		lookback: cfg.Lookback,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cascade_remote_query_requests_total",
			Help: "Queries sent to the remote query API, by result (success, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cascade_remote_query_duration_seconds",
			Help:    "Time each query to the remote query API took, errors included.",
			Buckets: prometheus.DefBuckets,
		}),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.requests.WithLabelValues("success")
	c.requests.WithLabelValues("error")
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(c.requests), cfg.Registerer.Register(c.duration)); err != nil {
			return nil, fmt.Errorf("remote query: metrics: %w", err)
		}
	}
	return c, nil
}

// Querier implements storage.Queryable.
func (c *Client) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{c: c, mint: mint, maxt: maxt}, nil
}

type querier struct {
	c          *Client
	mint, maxt int64
}

func (q *querier) Close() error { return nil }

// Select sends one query and returns its series sorted by labels, whatever
// sortSeries says (the merge with the local TSDB needs them sorted).
func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	start, end := q.mint, q.maxt
	if hints != nil {
		start, end = hints.Start, hints.End
	}
	if end < start {
		return storage.EmptySeriesSet()
	}
	sel := selector(matchers)
	instant := q.c.lookback > 0 && hints != nil && hints.Range == 0 && hints.Step == 0 &&
		end-start+1 == q.c.lookback.Milliseconds() && hints.Func != "timestamp"
	query := sel
	if !instant {
		query = fmt.Sprintf("%s[%dms]", sel, end-start+1)
	}
	v, warnings, err := q.c.query(ctx, query, time.UnixMilli(end))
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("remote query %s: %w", query, err))
	}
	series, err := decode(v, instant, end)
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("remote query %s: %w", query, err))
	}
	return &seriesSet{series: series, i: -1, warnings: toAnnotations(warnings)}
}

// LabelValues asks /api/v1/label/<name>/values over the querier's range.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ctx, cancel := context.WithTimeout(ctx, q.c.timeout)
	defer cancel()
	began := time.Now()
	vals, warnings, err := q.c.api.LabelValues(ctx, name, matchList(matchers), time.UnixMilli(q.mint), time.UnixMilli(q.maxt), limitOpt(hints)...)
	q.c.observe(began, err)
	err = withDetail(err)
	if err != nil {
		return nil, nil, fmt.Errorf("remote query: label values of %q: %w", name, err)
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		out = append(out, string(v))
	}
	slices.Sort(out)
	return out, toAnnotations(warnings), nil
}

// LabelNames asks /api/v1/labels over the querier's range.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ctx, cancel := context.WithTimeout(ctx, q.c.timeout)
	defer cancel()
	began := time.Now()
	names, warnings, err := q.c.api.LabelNames(ctx, matchList(matchers), time.UnixMilli(q.mint), time.UnixMilli(q.maxt), limitOpt(hints)...)
	q.c.observe(began, err)
	err = withDetail(err)
	if err != nil {
		return nil, nil, fmt.Errorf("remote query: label names: %w", err)
	}
	slices.Sort(names)
	return names, toAnnotations(warnings), nil
}

func (c *Client) query(ctx context.Context, query string, ts time.Time) (model.Value, v1.Warnings, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	began := time.Now()
	v, warnings, err := c.api.Query(ctx, query, ts)
	c.observe(began, err)
	return v, warnings, withDetail(err)
}

// withDetail adds the start of the body to an HTTP error status: the
// client library keeps it apart, and it is often the only explanation
// (a proxy's page, a tenant error of Mimir).
func withDetail(err error) error {
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Detail == "" {
		return err
	}
	detail := strings.Join(strings.Fields(apiErr.Detail), " ")
	if len(detail) > 200 {
		detail = strings.ToValidUTF8(detail[:200], "") + "..."
	}
	return fmt.Errorf("%w: %s", err, detail)
}

func (c *Client) observe(began time.Time, err error) {
	c.duration.Observe(time.Since(began).Seconds())
	if err != nil {
		c.requests.WithLabelValues("error").Inc()
		return
	}
	c.requests.WithLabelValues("success").Inc()
}

// noCache adds nocache=1 to every request. VictoriaMetrics (single-node
// and vmselect) otherwise answers an instant query for the last 30 s as of
// 30 s earlier (its -search.latencyOffset), so every series scraped since
// would look absent and rules would fire half a minute late, or on nothing;
// Prometheus, Thanos and Mimir ignore the parameter.
type noCache struct{ next http.RoundTripper }

func (n noCache) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	q := r.URL.Query()
	q.Set("nocache", "1")
	r.URL.RawQuery = q.Encode()
	return n.next.RoundTrip(r)
}

// selector writes matchers as a PromQL vector selector.
func selector(matchers []*labels.Matcher) string {
	parts := make([]string, 0, len(matchers))
	for _, m := range matchers {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func matchList(matchers []*labels.Matcher) []string {
	if len(matchers) == 0 {
		return nil
	}
	return []string{selector(matchers)}
}

func limitOpt(hints *storage.LabelHints) []v1.Option {
	if hints == nil || hints.Limit <= 0 {
		return nil
	}
	return []v1.Option{v1.WithLimit(uint64(hints.Limit))}
}

func toAnnotations(warnings v1.Warnings) annotations.Annotations {
	var a annotations.Annotations
	for _, w := range warnings {
		a.Add(fmt.Errorf("remote query: %s", w))
	}
	return a
}

// decode turns a query answer into series sorted by labels. An instant
// query must answer a vector, each sample then stamped at ts; a range
// selector must answer a matrix with samples in time order. Native
// histograms are refused: Cascade's rules read none, and turning the API's
// bucket list back into a histogram would be lossy.
func decode(v model.Value, instant bool, ts int64) ([]storage.Series, error) {
	var series []storage.Series
	switch v := v.(type) {
	case model.Vector:
		if !instant {
			return nil, errors.New("answer is a vector, want a matrix")
		}
		for _, s := range v {
			if s.Histogram != nil {
				return nil, fmt.Errorf("series %s: native histograms are not supported", s.Metric)
			}
			series = append(series, storage.NewListSeries(toLabels(s.Metric), []chunks.Sample{sample{t: ts, f: float64(s.Value)}}))
		}
	case model.Matrix:
		if instant {
			return nil, errors.New("answer is a matrix, want a vector")
		}
		for _, s := range v {
			if len(s.Histograms) > 0 {
				return nil, fmt.Errorf("series %s: native histograms are not supported", s.Metric)
			}
			samples := make([]chunks.Sample, 0, len(s.Values))
			for i, p := range s.Values {
				if i > 0 && p.Timestamp <= s.Values[i-1].Timestamp {
					return nil, fmt.Errorf("series %s: samples out of time order", s.Metric)
				}
				samples = append(samples, sample{t: int64(p.Timestamp), f: float64(p.Value)})
			}
			if len(samples) > 0 {
				series = append(series, storage.NewListSeries(toLabels(s.Metric), samples))
			}
		}
	case nil:
		return nil, errors.New("answer holds no result")
	default:
		return nil, fmt.Errorf("answer is a %s, want a matrix or vector", v.Type())
	}
	slices.SortFunc(series, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	for i := 1; i < len(series); i++ {
		if labels.Equal(series[i].Labels(), series[i-1].Labels()) {
			return nil, fmt.Errorf("series %s answered twice", series[i].Labels())
		}
	}
	return series, nil
}

func toLabels(m model.Metric) labels.Labels {
	b := labels.NewScratchBuilder(len(m))
	for k, v := range m {
		if v != "" {
			b.Add(string(k), string(v))
		}
	}
	b.Sort()
	return b.Labels()
}

// sample is one float sample, as chunks.Sample.
type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }

// seriesSet iterates over decoded series.
type seriesSet struct {
	series   []storage.Series
	i        int
	warnings annotations.Annotations
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return s.warnings }
