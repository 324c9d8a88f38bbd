package apimemory

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProcessMetricsFixture(t *testing.T) {
	b, err := os.ReadFile(testdata(t, "apiserver-metrics.txt"))
	require.NoError(t, err)
	pm, err := parseProcessMetrics(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, processMetrics{residentBytes: 2.92405248e+08, startTime: 1.79557811784e+09}, pm)
}

func TestParseProcessMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     processMetrics
		wantErr  string
	}{
		{name: "untyped, no final newline", in: "process_resident_memory_bytes 1024\nprocess_start_time_seconds 17",
			want: processMetrics{residentBytes: 1024, startTime: 17}},
		{name: "without start time", in: "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1024\n",
			want: processMetrics{residentBytes: 1024}},
		{name: "garbage elsewhere is not ours", in: "foo{{{ !!\nprocess_resident_memory_bytes 1024\n",
			want: processMetrics{residentBytes: 1024}},
		{name: "similar names are not ours", in: "process_resident_memory_bytes_total 5\nprocess_resident_memory_bytes 7\n",
			want: processMetrics{residentBytes: 7}},
		{name: "quoted name", in: "{\"process_resident_memory_bytes\"} 9\n",
			want: processMetrics{residentBytes: 9}},
		{name: "empty", in: "", wantErr: "no process_resident_memory_bytes"},
		{name: "HTML", in: "<html><body>502 Bad Gateway</body></html>\n", wantErr: "no process_resident_memory_bytes"},
		{name: "broken value", in: "process_resident_memory_bytes lots\n", wantErr: "text format parsing error"},
		{name: "negative", in: "process_resident_memory_bytes -5\n", wantErr: "not a byte count"},
		{name: "NaN", in: "process_resident_memory_bytes NaN\n", wantErr: "no process_resident_memory_bytes"},
		{name: "wrong type", in: "# TYPE process_resident_memory_bytes counter\nprocess_resident_memory_bytes 5\n", wantErr: "want gauge"},
		{name: "too much of it", in: strings.Repeat("process_resident_memory_bytes{a=\"b\"} 5\n", 5000), wantErr: "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcessMetrics(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseTextRecoversFromParserPanic(t *testing.T) {
	_, err := parseText([]byte("{}"))
	require.ErrorContains(t, err, "text format parser failed")
}

func TestSelectFamiliesLongLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	in := "other_metric{label=\"" + long + "\"} 1\n" +
		"process_resident_memory_bytes 5\n" +
		"# HELP other " + long + "\n" +
		"process_start_time_seconds 3\n"
	got, err := selectFamilies(strings.NewReader(in), residentMemoryMetric, startTimeMetric)
	require.NoError(t, err)
	require.Equal(t, "process_resident_memory_bytes 5\nprocess_start_time_seconds 3\n", string(got))
}

// fakeAPIServer serves a /metrics body that the test can change, and
// checks the bearer token as the API server does.
type fakeAPIServer struct {
	mu     sync.Mutex
	status int
	body   []byte
}

func (f *fakeAPIServer) set(status int, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
}

func TestEndpointSource(t *testing.T) {
	capture, err := os.ReadFile(testdata(t, "apiserver-metrics.txt"))
	require.NoError(t, err)
	fake := &fakeAPIServer{status: http.StatusOK, body: capture}
	srv := httptest.NewTLSServer(fake)
	defer srv.Close()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "s3cret\n")
	cfg := DefaultConfig()
	cfg.InsecureSkipVerify = true
	cfg.BearerTokenFile = tokenFile
	spec, err := ParseEndpointSpec("apiserver-0=" + srv.URL)
	require.NoError(t, err)
	cfg.Endpoints = []EndpointSpec{spec}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)
	poll := func() {
		for _, s := range e.endpoints {
			s.poll(context.Background())
		}
	}

	requireMetrics(t, e, `cascade_apiserver_restarts_total{replica="apiserver-0"} 0`)

	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="apiserver-0"} 2.92405248e+08
cascade_apiserver_restarts_total{replica="apiserver-0"} 0
cascade_apiserver_up{replica="apiserver-0"} 1
`)
	requireLintClean(t, e)

	// Garbage: down, and no RSS served as if current.
	fake.set(http.StatusOK, []byte("<html>oops</html>"))
	poll()
	requireMetrics(t, e, `
cascade_apiserver_restarts_total{replica="apiserver-0"} 0
cascade_apiserver_up{replica="apiserver-0"} 0
cascade_apiserver_source_errors_total{source="metrics"} 1
`, append(memoryMetrics, "cascade_apiserver_source_errors_total")...)

	// Same process again: not a restart.
	fake.set(http.StatusOK, capture)
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="apiserver-0"} 2.92405248e+08
cascade_apiserver_restarts_total{replica="apiserver-0"} 0
cascade_apiserver_up{replica="apiserver-0"} 1
`)

	// A new process: its start time rose.
	fake.set(http.StatusOK, []byte("process_resident_memory_bytes 1e+08\nprocess_start_time_seconds 1.795578500e+09\n"))
	poll()
	requireMetrics(t, e, `
cascade_apiserver_memory_working_set_bytes{replica="apiserver-0"} 1e+08
cascade_apiserver_restarts_total{replica="apiserver-0"} 1
cascade_apiserver_up{replica="apiserver-0"} 1
`)

	// A server error, a rejected token, a dead server: all down.
	fake.set(http.StatusInternalServerError, nil)
	poll()
	writeFile(t, tokenFile, "wrong\n")
	poll()
	writeFile(t, tokenFile, "s3cret\n")
	srv.Close()
	poll()
	requireMetrics(t, e, `
cascade_apiserver_restarts_total{replica="apiserver-0"} 1
cascade_apiserver_up{replica="apiserver-0"} 0
cascade_apiserver_source_errors_total{source="metrics"} 4
`, append(memoryMetrics, "cascade_apiserver_source_errors_total")...)
}

func TestEndpointDefaultReplicaAndTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)

	cfg := DefaultConfig()
	cfg.Timeout = 50 * time.Millisecond
	spec, err := ParseEndpointSpec(srv.URL)
	require.NoError(t, err)
	cfg.Endpoints = []EndpointSpec{spec}
	e, err := New(cfg, nil, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	e.endpoints[0].poll(ctx)
	replica := strings.TrimPrefix(srv.URL, "http://")
	requireMetrics(t, e, `
cascade_apiserver_restarts_total{replica="`+replica+`"} 0
cascade_apiserver_up{replica="`+replica+`"} 0
`)
}
