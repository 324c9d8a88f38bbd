package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestPprofOnlyWhenEnabled: --web.enable-pprof serves the Go profiles on the
// exporter's own mux; without it nothing answers under /debug/pprof/.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	get := func(enabled bool, path string) (int, string) {
		s := &Server{metricsPath: "/metrics", enablePprof: enabled}
		srv := httptest.NewServer(s.Handler(prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler)))
		defer srv.Close()
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	code, body := get(true, "/debug/pprof/heap?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "heap profile")
	code, body = get(true, "/debug/pprof/allocs?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "heap profile", "allocs is the heap profile read as alloc_space")

	code, body = get(false, "/debug/pprof/heap?debug=1")
	require.NotContains(t, body, "heap profile", "status %d", code)
}
