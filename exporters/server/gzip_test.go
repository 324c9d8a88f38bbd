package server

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestGzipOnlyWhenEnabled: the metrics are sent as plain text to a scraper
// that accepts gzip, as Prometheus does, unless --web.enable-gzip is given;
// both bodies carry the same families.
func TestGzipOnlyWhenEnabled(t *testing.T) {
	scrape := func(args ...string) (encoding string, body []byte) {
		s := parse(t, args...)
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cascade_test_gauge", Help: "h"}, func() float64 { return 1 }))
		srv := httptest.NewServer(s.Handler(reg, nil, slog.New(slog.DiscardHandler)))
		defer srv.Close()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Accept-Encoding", "gzip")
		// Without DisableCompression the transport would decompress and
		// drop the header, hiding what was sent.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var r io.Reader = resp.Body
		if encoding = resp.Header.Get("Content-Encoding"); encoding == "gzip" {
			zr, err := gzip.NewReader(resp.Body)
			require.NoError(t, err)
			r = zr
		}
		body, err = io.ReadAll(r)
		require.NoError(t, err)
		return encoding, body
	}

	encoding, plain := scrape()
	require.Empty(t, encoding, "compressed without --web.enable-gzip")
	require.Contains(t, string(plain), "cascade_test_gauge 1\n")

	encoding, decompressed := scrape("--web.enable-gzip")
	require.Equal(t, "gzip", encoding)
	require.Equal(t, string(plain), string(decompressed))
}
