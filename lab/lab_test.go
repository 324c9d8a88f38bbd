package main

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cascade-sre/cascade/internal/testenv"
	"github.com/cascade-sre/cascade/rules"
)

// testLog prints the timeline into the test's log as it happens.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Log(line[:len(line)-1])
	}
}

// TestLab runs a short lab of each shape, 100 nodes per cluster, so the lab
// cannot rot: one page naming the OOM within 60 s of the first OOM kill,
// nothing else at the pager; in the region, one regional page for the
// three clusters and the guard in each of them. It runs the shapes one
// after the other (about 7 minutes on 2 cores).
func TestLab(t *testing.T) {
	testenv.RequireLong(t)
	bin, err := testenv.BuildCascade(t.TempDir())
	require.NoError(t, err)
	for _, shape := range []string{"cluster", "region"} {
		t.Run(shape, func(t *testing.T) {
			f, checks, err := Run(t.Context(), Options{
				Shape: shape, Nodes: 100, Clusters: 3,
				Interval: 10 * time.Second, Baseline: 30 * time.Second, RemedyAfter: 45 * time.Second,
				Settle: 15 * time.Second, WebhookCacheTTL: 10 * time.Second,
				Cascade: bin, OutputDir: t.TempDir(), Out: &testLog{t: t}, Timeout: 6 * time.Minute,
			})
			require.NoError(t, err)
			for _, c := range checks {
				assert.True(t, c.OK, "%s: got %s", c.What, c.Got)
			}
			require.Equal(t, 1, f.Pages, "exactly one page")
			require.Equal(t, rules.CauseOOM, f.PageRootCause)
			require.NotNil(t, f.TimeToPageSeconds)
			require.LessOrEqual(t, *f.TimeToPageSeconds, 60.0)
			require.Zero(t, f.SymptomsAtPager)
			if shape == "region" {
				require.Equal(t, rules.ScopeRegion, f.PageScope)
				require.Equal(t, sharedAPI, f.PageShared)
				require.Equal(t, 3, f.ClustersHit)
				require.Zero(t, f.ClusterScopedPages)
			}
		})
	}
}
