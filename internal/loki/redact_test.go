package loki

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/logtest"
	"github.com/cascade-sre/cascade/internal/testenv"
)

// TestPasswordInURLNeverLogged pushes to a dead store whose URL holds a
// password, and reads what the sender logged: the URL, masked.
func TestPasswordInURLNeverLogged(t *testing.T) {
	const password = "S3cr3tPASS"
	port, err := testenv.FreePort() // nothing listens there
	require.NoError(t, err)
	dead := fmt.Sprintf("127.0.0.1:%d", port)

	logger, logs := logtest.New()
	c, err := New(testConfig("http://cascade:"+password+"@"+dead+"/loki/api/v1/push"), logger)
	require.NoError(t, err)
	require.True(t, c.Send(model.LabelSet{"source": "test"}, time.Now(), "x"))
	require.Eventually(t, func() bool { return c.Stats().SendFailed == 1 }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, c.Close(t.Context()))
	out := logs.String()
	require.Contains(t, out, "cannot push to Loki")
	require.Contains(t, out, "gave up a batch")
	require.Contains(t, out, "cascade:xxxxx@"+dead)
	require.NotContains(t, out, password)

	for _, bad := range []string{
		"ftp://cascade:" + password + "@loki:3100/push",
		"http://cascade:" + password + "@loki:bad/push",
	} {
		cfg := testConfig(bad)
		err := cfg.Validate()
		require.Error(t, err)
		require.NotContains(t, err.Error(), password)
		require.True(t, strings.Contains(err.Error(), "cascade:xxxxx@"), "the error names the URL: %v", err)
	}
}
