package apimemory

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
)

// TestEndpointPasswordNeverLogged starts the exporter on an endpoint whose
// URL holds a password, makes its probe fail and succeed again, and reads
// the log it wrote: the URL is there, the password is not. Errors about
// such a URL do not quote the password either.
func TestEndpointPasswordNeverLogged(t *testing.T) {
	const password = "S3cr3tPASS"
	var failing sync.Mutex // held while the endpoint answers 503
	failing.Lock()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "scraper" || pass != password {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if !failing.TryLock() {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		failing.Unlock()
		_, _ = w.Write([]byte("process_resident_memory_bytes 1e+08\n"))
	}))
	defer srv.Close()

	spec, err := ParseEndpointSpec("r=" + strings.Replace(srv.URL, "http://", "http://scraper:"+password+"@", 1) + "/metrics")
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Endpoints = []EndpointSpec{spec}
	cfg.PollInterval, cfg.Timeout = 50*time.Millisecond, 50*time.Millisecond
	logger, logs := logtest.New()
	e, err := New(cfg, nil, logger)
	require.NoError(t, err)
	runExporter(t, e)

	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "probe failed") {
			return fmt.Errorf("no failed probe logged yet: %q", logs.String())
		}
		return nil
	})
	failing.Unlock()
	eventually(t, 10*time.Second, expectSamples(t, e, "r", map[string]*float64{"cascade_apiserver_up": value(1)}))
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "succeeds again") {
			return fmt.Errorf("no recovery logged yet: %q", logs.String())
		}
		return nil
	})

	out := logs.String()
	require.Contains(t, out, "url=http://scraper:xxxxx@127.0.0.1:", "the URL is logged, masked")
	require.Contains(t, out, "503")
	require.NotContains(t, out, password)

	for _, bad := range []string{
		"r=http://scraper:" + password + "@127.0.0.1:bad/metrics",
		"r=ftp://scraper:" + password + "@127.0.0.1/metrics",
		"http://scraper:" + password + "@/metrics",
	} {
		_, err := ParseEndpointSpec(bad)
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), password)
		require.Contains(t, err.Error(), "scraper:xxxxx@", "the error still names the endpoint")
	}
	cfg.Endpoints = []EndpointSpec{{Replica: "r", URL: "ftp://scraper:" + password + "@127.0.0.1/metrics"}}
	err = cfg.Validate()
	require.Error(t, err)
	require.NotContains(t, err.Error(), password)
}
