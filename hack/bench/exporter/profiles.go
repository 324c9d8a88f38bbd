package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// saveProfiles writes cascade's heap profile (what is live at its last GC)
// and allocation profile (everything allocated since it started) to dir, as
// cascade-N-heap-WHEN.pb.gz and cascade-N-allocs-WHEN.pb.gz, for
// `go tool pprof -sample_index=inuse_space|alloc_space bin/cascade-exporter FILE`.
// metricsURL is the target's /metrics; it runs with --web.enable-pprof.
func saveProfiles(ctx context.Context, dir, metricsURL string, n int, when string) error {
	base := strings.TrimSuffix(metricsURL, "/metrics") + "/debug/pprof/"
	for _, kind := range []string{"heap", "allocs"} {
		path := filepath.Join(dir, fmt.Sprintf("cascade-%d-%s-%s.pb.gz", n, kind, when))
		if err := fetchTo(ctx, base+kind, path); err != nil {
			return fmt.Errorf("%s profile: %w", kind, err)
		}
	}
	progress("[%d] cascade: %s heap and allocation profiles written to %s", n, when, dir)
	return nil
}

func fetchTo(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
