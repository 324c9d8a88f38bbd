package remotequery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

const lookback = 5 * time.Minute

func newClient(t testing.TB, url string, timeout time.Duration) *Client {
	t.Helper()
	c, err := New(Config{URL: url, Timeout: timeout, Lookback: lookback, HTTPClient: config.DefaultHTTPClientConfig})
	require.NoError(t, err)
	return c
}

// selectAll runs one Select and reads every series.
func selectAll(c *Client, hints *storage.SelectHints, ms ...*labels.Matcher) (map[string][][2]float64, error) {
	q, _ := c.Querier(hints.Start, hints.End)
	ss := q.Select(context.Background(), true, hints, ms...)
	out := map[string][][2]float64{}
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		var pts [][2]float64
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			pts = append(pts, [2]float64{float64(ts), v})
		}
		out[s.Labels().String()] = pts
	}
	return out, ss.Err()
}

var (
	end          = int64(1_700_000_000_000)
	instantHints = &storage.SelectHints{Start: end - lookback.Milliseconds() + 1, End: end}
	rangeHints   = &storage.SelectHints{Start: end - 60_000 + 1, End: end, Range: 60_000, Func: "rate"}
	upMatcher    = labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "up")
)

// answer serves one fixed body with a status for every request.
func answer(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestFailuresAreErrors: whatever goes wrong with the store, Select fails
// (so the rule evaluation fails and is counted); it never answers "no
// series", which the rules would read as "all healthy".
func TestFailuresAreErrors(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer hang.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	matrix := `{"status":"success","data":{"resultType":"matrix","result":[%s]}}`
	for name, tc := range map[string]struct {
		url   string
		hints *storage.SelectHints
		want  string
	}{
		"store down":        {url: down.URL, hints: rangeHints, want: "connection refused"},
		"timeout":           {url: hang.URL, hints: rangeHints, want: "deadline exceeded"},
		"500 with api json": {url: answer(t, 500, `{"status":"error","errorType":"internal","error":"boom"}`).URL, hints: rangeHints, want: "boom"},
		"503 html":          {url: answer(t, 503, `<html>maintenance</html>`).URL, hints: rangeHints, want: "503"},
		"400 bad query":     {url: answer(t, 400, `{"status":"error","errorType":"bad_data","error":"parse error"}`).URL, hints: rangeHints, want: "parse error"},
		"404 wrong path":    {url: answer(t, 404, `404 page not found`).URL, hints: rangeHints, want: "404"},
		"garbage":           {url: answer(t, 200, `not json at all`).URL, hints: rangeHints, want: "bad_response"},
		"truncated":         {url: answer(t, 200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}`).URL, hints: rangeHints, want: "bad_response"},
		"no data":           {url: answer(t, 200, `{"status":"success"}`).URL, hints: rangeHints, want: "remote query"},
		"scalar":            {url: answer(t, 200, `{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`).URL, hints: rangeHints, want: "scalar"},
		"vector for range":  {url: answer(t, 200, `{"status":"success","data":{"resultType":"vector","result":[]}}`).URL, hints: rangeHints, want: "want a matrix"},
		"matrix for instant": {url: answer(t, 200, strings.Replace(matrix, "%s", "", 1)).URL,
			hints: instantHints, want: "want a vector"},
		"histogram": {url: answer(t, 200, strings.Replace(matrix, "%s", `{"metric":{"__name__":"h"},"histograms":[[1,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]]}`, 1)).URL,
			hints: rangeHints, want: "native histograms"},
		"out of order": {url: answer(t, 200, strings.Replace(matrix, "%s", `{"metric":{"__name__":"up"},"values":[[2,"1"],[1,"1"]]}`, 1)).URL,
			hints: rangeHints, want: "out of time order"},
		"same series twice": {url: answer(t, 200, strings.Replace(matrix, "%s", `{"metric":{"__name__":"up"},"values":[[1,"1"]]},{"metric":{"__name__":"up"},"values":[[2,"1"]]}`, 1)).URL,
			hints: rangeHints, want: "answered twice"},
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, tc.url, 300*time.Millisecond)
			began := time.Now()
			series, err := selectAll(c, tc.hints, upMatcher)
			require.ErrorContains(t, err, tc.want)
			require.Empty(t, series)
			require.Less(t, time.Since(began), 3*time.Second, "the timeout bounds every query")
			require.Equal(t, 1.0, testutil.ToFloat64(c.requests.WithLabelValues("error"))+testutil.ToFloat64(c.requests.WithLabelValues("success")))
		})
	}
}

// TestRequests: what goes over the wire is a plain query-API call, with the
// configured headers and credentials: an instant selector as an instant
// query, a range as `{...}[Nms]` covering [start, end], both at end.
func TestRequests(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request // path and headers only
	var forms []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		mu.Lock()
		got = append(got, &http.Request{URL: r.URL, Header: r.Header.Clone()})
		forms = append(forms, r.Form.Get("query")+" @ "+r.Form.Get("time"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.Form.Get("query"), "[") {
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[
				{"metric":{"__name__":"up","job":"b"},"values":[[1699999999.5,"1"],[1700000000,"0"]]},
				{"metric":{"__name__":"up","job":"a"},"values":[[1699999999.9,"NaN"]]}]}}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","warnings":["partial"],"data":{"resultType":"vector","result":[
			{"metric":{"__name__":"up","job":"a"},"value":[1700000000,"1"]}]}}`))
	}))
	defer srv.Close()

	hc := config.DefaultHTTPClientConfig
	hc.HTTPHeaders = &config.Headers{Headers: map[string]config.Header{"X-Scope-OrgID": {Values: []string{"tenant-1"}}}}
	hc.BasicAuth = &config.BasicAuth{Username: "cascade", Password: "s3cret"}
	reg := prometheus.NewRegistry()
	c, err := New(Config{URL: srv.URL + "/prometheus/", Lookback: lookback, HTTPClient: hc, Registerer: reg})
	require.NoError(t, err)

	job := labels.MustNewMatcher(labels.MatchRegexp, "job", `a|b"c`)
	series, err := selectAll(c, instantHints, upMatcher, job)
	require.NoError(t, err)
	require.Equal(t, map[string][][2]float64{`{__name__="up", job="a"}`: {{float64(end), 1}}}, series)

	series, err = selectAll(c, rangeHints, upMatcher)
	require.NoError(t, err)
	require.Len(t, series, 2)
	require.Equal(t, [][2]float64{{float64(end - 500), 1}, {float64(end), 0}}, series[`{__name__="up", job="b"}`])

	// timestamp(up) needs the samples' own times: sent as a range.
	_, err = selectAll(c, &storage.SelectHints{Start: instantHints.Start, End: end, Func: "timestamp"}, upMatcher)
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		`{__name__="up",job=~"a|b\"c"} @ 1700000000`,
		`{__name__="up"}[60000ms] @ 1700000000`,
		`{__name__="up"}[300000ms] @ 1700000000`,
	}, forms)
	for _, r := range got {
		require.Equal(t, "/prometheus/api/v1/query", r.URL.Path)
		require.Equal(t, "1", r.URL.Query().Get("nocache"), "VictoriaMetrics answers the last 30 s as of 30 s ago without it")
		require.Equal(t, "tenant-1", r.Header.Get("X-Scope-OrgID"))
		user, pass, ok := r.BasicAuth()
		require.True(t, ok)
		require.Equal(t, "cascade:s3cret", user+":"+pass)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(c.requests.WithLabelValues("success")))
	n, err := testutil.GatherAndCount(reg, "cascade_remote_query_requests_total", "cascade_remote_query_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, u := range []string{"", "prometheus:9090", "ftp://p/x", "http://"} {
		_, err := New(Config{URL: u, HTTPClient: config.DefaultHTTPClientConfig})
		require.Error(t, err, u)
	}
	hc := config.DefaultHTTPClientConfig
	hc.BearerToken = "a"
	hc.BasicAuth = &config.BasicAuth{Username: "b"}
	_, err := New(Config{URL: "http://p:9090", HTTPClient: hc})
	require.Error(t, err)
}

// FuzzAnswer: any body a store might send back, under any status, gives
// sorted, distinct series or an error; never a panic.
func FuzzAnswer(f *testing.F) {
	f.Add(200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"1"],[2,"+Inf"]]}]}}`, true)
	f.Add(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"1"]}]}}`, false)
	f.Add(500, `{"status":"error","error":"x"}`, true)
	f.Add(200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[[1,{"count":"1"}]]}]}}`, true)
	var (
		mu     sync.Mutex
		status int
		body   string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		s, b := status, body
		mu.Unlock()
		w.WriteHeader(s)
		_, _ = w.Write([]byte(b))
	}))
	defer srv.Close()
	c := newClient(f, srv.URL, 5*time.Second)
	f.Fuzz(func(t *testing.T, s int, b string, isRange bool) {
		if s < 200 || s > 599 {
			s = 200
		}
		mu.Lock()
		status, body = s, b
		mu.Unlock()
		hints := instantHints
		if isRange {
			hints = rangeHints
		}
		q, _ := c.Querier(hints.Start, hints.End)
		ss := q.Select(context.Background(), true, hints, upMatcher)
		var prev labels.Labels
		first := true
		for ss.Next() {
			l := ss.At().Labels()
			if !first && labels.Compare(prev, l) >= 0 {
				t.Fatalf("series not sorted or repeated: %s then %s", prev, l)
			}
			prev, first = l, false
		}
		if ss.Err() == nil && s/100 != 2 {
			t.Fatalf("status %d answered without error", s)
		}
	})
}
