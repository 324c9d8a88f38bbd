package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestLokiPasswordNeverLogged forwards lines to a dead Loki whose URL holds
// a password and reads the exporter's log: the URL is there, masked, from
// the start-up line to the given-up pushes.
func TestLokiPasswordNeverLogged(t *testing.T) {
	const password = "S3cr3tPASS"
	port, err := testenv.FreePort() // nothing listens there
	require.NoError(t, err)
	dead := fmt.Sprintf("127.0.0.1:%d", port)

	env := newTailEnv(t)
	appendFile(t, env.log, leaseLines(0, 5))
	cfg := DefaultConfig()
	cfg.Logs = []LogSpec{{Format: FormatNginxJSON, Path: env.log}}
	cfg.FromBeginning = true
	cfg.PollInterval = 10 * time.Millisecond
	cfg.Loki.URL = "http://gateway:" + password + "@" + dead + "/loki/api/v1/push"
	cfg.Loki.BatchWait = 50 * time.Millisecond
	cfg.Loki.MinBackoff, cfg.Loki.MaxBackoff, cfg.Loki.MaxRetries = 10*time.Millisecond, 20*time.Millisecond, 2
	logger, logs := logtest.New()
	e, err := New(cfg, logger)
	require.NoError(t, err)
	stop := runExporter(t, e)
	waitLines(t, e, 5, 0)
	waitFor(t, 20*time.Second, "the batch to be given up", func() bool {
		return metric(t, e, `cascade_loki_entries_dropped_total{component="gateway",reason="send_failed"}`) == 5
	})
	stop()

	out := logs.String()
	require.Contains(t, out, "gave up a batch")
	require.Equal(t, 3, logs.Count("gateway:xxxxx@"+dead), "the start-up line and the failures, masked:\n%s", out)
	require.NotContains(t, out, password)
}
