package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestFirstNotificationIsNotLost: an alert firing at the first evaluation
// after start reaches a real Alertmanager's webhook within seconds, not a
// minute later at the rule manager's first resend: alerts handed to the
// notifier before discovery has named an Alertmanager are held and sent as
// soon as one is known.
func TestFirstNotificationIsNotLost(t *testing.T) {
	bin := cascadeBinary(t)
	hooks := testenv.WebhooksForTest(t)
	am := testenv.AlertmanagerForTest(t, fmt.Sprintf(`route:
  receiver: hook
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: hook
    webhook_configs: [{url: %q}]
`, hooks.URL("hook")))

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "firing.yml"), []byte(`groups:
  - name: firing
    rules:
      - alert: FiringAtOnce
        expr: vector(1)
`), 0o644))
	addr := freeAddr(t)
	cfgPath := writeRunConfig(t, dir, fmt.Sprintf(`global:
  evaluation_interval: 1s
rule_files: [firing.yml]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
cascade:
  storage: {path: data}
`, strings.TrimPrefix(am.URL, "http://")))
	started := time.Now()
	startRun(t, bin, dir, cfgPath, addr)
	require.Eventually(t, func() bool { return hooks.Count("hook") > 0 }, 90*time.Second, 50*time.Millisecond)
	took := time.Since(started)
	t.Logf("first notification after %s", took.Round(10*time.Millisecond))
	require.Less(t, took, 10*time.Second, "the first notification waited for the rule manager's resend")
	require.Equal(t, "FiringAtOnce", hooks.Received("hook")[0].Alerts[0].Labels["alertname"])
	require.Zero(t, scrapeValue(t, addr, "prometheus_notifications_dropped_total"))
}
