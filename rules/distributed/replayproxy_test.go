package distributed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// replayProxy stands between vmalert's replay and VictoriaMetrics, so that
// the replay evaluates the rules as a ruler does live: one evaluation after
// the other, each seeing everything written before it.
//
// vmalert replays rule by rule, each as range queries over the span, and
// writes each rule's results before the next rule reads them. Three things
// of Cascade's rule files do not survive that as they are:
//
//   - A range of several evaluations of `a or on (...) b`, where a is a
//     recorded series (it keeps its name) and b is not, answers a's series
//     and b's as two series; renamed by the recording rule they are one
//     labelset, and vmalert refuses the whole replay. Evaluated one instant
//     at a time (as live) they never meet. So every recording rule's range
//     request is narrowed to its first evaluation, with
//     -replay.maxDatapointsPerQuery=1 making the requests follow each other
//     evaluation by evaluation. Alerting rules keep their ranges: vmalert
//     carries their pending state from one request's last point to the
//     next one's first.
//   - The incident rules keep a root cause once chosen by reading their own
//     last 10 minutes. vmalert queues each evaluation's result for remote
//     write and asks the next evaluation at once; so a query of a rule that
//     reads itself waits until the previous evaluation's result, if it had
//     one, has come through the proxy, and every query waits for what came
//     through to be made searchable.
//   - Live, vmalert writes a staleness marker for a recording rule's series
//     the first evaluation it is gone (rule/recording.go), so the series is
//     gone at once for the rules that read it, as in Prometheus. Its replay
//     writes none, and VictoriaMetrics would show the last value for up to
//     1.5 evaluations more. The proxy, which sees every recording rule's
//     answers evaluation by evaluation, writes those markers.
type replayProxy struct {
	URL string

	vm       *testenv.VictoriaMetrics
	record   map[string]string // a recording rule's expression → its name
	selfRead map[string]bool   // such an expression that reads its own name

	mu      sync.Mutex
	written *sync.Cond // broadcast when a write came through
	dirty   bool       // written since the last flush
	// newest is the newest sample written of each metric name.
	newest map[string]time.Time
	// last are the series each recording rule answered at its last
	// evaluation (by their labels' text), and that evaluation's time.
	last   map[string]map[string]labels.Labels
	lastAt map[string]time.Time

	queries, narrowed, held, staleMarkers atomic.Int64
}

// selfReadTimeout bounds the wait for a rule's previous result: vmalert
// sends its queue every 10 ms here (-remoteWrite.flushInterval).
const selfReadTimeout = 10 * time.Second

func newReplayProxy(t *testing.T, vm *testenv.VictoriaMetrics, files []string) *replayProxy {
	t.Helper()
	p := &replayProxy{
		vm: vm, record: map[string]string{}, selfRead: map[string]bool{},
		newest: map[string]time.Time{}, last: map[string]map[string]labels.Labels{}, lastAt: map[string]time.Time{},
	}
	p.written = sync.NewCond(&p.mu)
	for _, g := range ruleGroups(t, files) {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			require.NotContains(t, p.record, r.Expr, "two recording rules of one expression")
			require.Empty(t, r.Labels, "%s: a recording rule's own labels would be part of its series", r.Record)
			p.record[r.Expr] = r.Record
			if strings.Contains(r.Expr, r.Record) {
				p.selfRead[r.Expr] = true
			}
		}
	}
	require.NotEmpty(t, p.selfRead, "the incident rules read their own results")
	target, err := url.Parse(vm.URL)
	require.NoError(t, err)
	forward := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/write":
			p.write(w, r, forward)
		case "/api/v1/query_range":
			p.query(w, r, forward)
		default:
			http.Error(w, "the replay proxy forwards remote write and range queries only, not "+r.URL.Path, http.StatusNotImplemented)
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// write forwards a remote write and notes the newest sample of each name.
func (p *replayProxy) write(w http.ResponseWriter, r *http.Request, forward http.Handler) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	codec := compression.Type(r.Header.Get("Content-Encoding"))
	raw, err := compression.Decode(codec, body, nil)
	if err == nil {
		err = req.Unmarshal(raw)
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("remote write (%s): %v", codec, err), http.StatusBadRequest)
		return
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	forward.ServeHTTP(rec, r)
	if rec.Code/100 == 2 {
		p.mu.Lock()
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name != labels.MetricName {
					continue
				}
				for _, s := range ts.Samples {
					if at := time.UnixMilli(s.Timestamp); at.After(p.newest[l.Value]) {
						p.newest[l.Value] = at
					}
				}
			}
		}
		p.dirty = true
		p.written.Broadcast()
		p.mu.Unlock()
	}
	copyResponse(w, rec)
}

func (p *replayProxy) query(w http.ResponseWriter, r *http.Request, forward http.Handler) {
	p.queries.Add(1)
	q := r.URL.Query()
	expr := q.Get("query")
	record, isRecording := p.record[expr]
	if p.selfRead[expr] {
		if err := p.awaitLastResult(record); err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
	}
	p.mu.Lock()
	if p.dirty {
		if err := p.vm.Flush(r.Context()); err != nil {
			p.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		p.dirty = false
	}
	p.mu.Unlock()
	if !isRecording {
		forward.ServeHTTP(w, r)
		return
	}
	if q.Get("end") != q.Get("start") {
		p.narrowed.Add(1)
		q.Set("end", q.Get("start"))
		r = r.Clone(r.Context())
		r.URL.RawQuery = q.Encode()
	}
	rec := httptest.NewRecorder()
	forward.ServeHTTP(rec, r)
	if rec.Code == http.StatusOK {
		if err := p.noteAnswer(r.Context(), record, q.Get("start"), rec.Body.Bytes()); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
	}
	copyResponse(w, rec)
}

// awaitLastResult waits until the recording rule's result of its last
// evaluation, if it had one, has been written.
func (p *replayProxy) awaitLastResult(record string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.last[record]) == 0 {
		return nil
	}
	p.held.Add(1)
	want := p.lastAt[record]
	deadline := time.AfterFunc(selfReadTimeout, func() {
		p.mu.Lock()
		p.written.Broadcast()
		p.mu.Unlock()
	})
	defer deadline.Stop()
	began := time.Now()
	for p.newest[record].Before(want) {
		if time.Since(began) >= selfReadTimeout {
			return fmt.Errorf("%s of %s never came through", record, want.UTC())
		}
		p.written.Wait()
	}
	return nil
}

// noteAnswer keeps what a recording rule answered at an evaluation, and
// writes a staleness marker at that time for every series it answered the
// evaluation before and not now.
func (p *replayProxy) noteAnswer(ctx context.Context, record, start string, body []byte) error {
	var answer struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("answer to %s: %w", record, err)
	}
	at, err := time.Parse(time.RFC3339, start)
	if err != nil {
		return fmt.Errorf("evaluation time of %s: %w", record, err)
	}
	now := map[string]labels.Labels{}
	for _, s := range answer.Data.Result {
		s.Metric[labels.MetricName] = record
		ls := labels.FromMap(s.Metric)
		now[ls.String()] = ls
	}
	var stale prompb.WriteRequest
	p.mu.Lock()
	for key, ls := range p.last[record] {
		if _, ok := now[key]; ok {
			continue
		}
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: math.Float64frombits(value.StaleNaN), Timestamp: at.UnixMilli()}}}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		stale.Timeseries = append(stale.Timeseries, ts)
	}
	p.last[record], p.lastAt[record] = now, at
	p.mu.Unlock()
	if len(stale.Timeseries) == 0 {
		return nil
	}
	p.staleMarkers.Add(int64(len(stale.Timeseries)))
	raw, err := stale.Marshal()
	if err != nil {
		return err
	}
	compressed, err := compression.Encode(compression.Snappy, raw, nil)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.vm.RemoteWriteURL(), bytes.NewReader(compressed))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("staleness markers of %s: %s", record, resp.Status)
	}
	return p.vm.Flush(ctx)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
