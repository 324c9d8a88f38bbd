// Command regionalapi is the lab's shared regional API: a small service of
// the provider's that authenticates the kubelets of every cluster in the
// region (the clusters' API servers ask it through their webhook token
// authenticator) and rolls out the provider's deployments. Deployments in
// progress are held in memory, and journaled so a restart resumes them:
// a burst of them grows its memory to its limit, as in the outage Cascade
// exists for.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	tokensFile := flag.String("tokens", "", "node tokens, one \"TOKEN NODE\" a line")
	stateDir := flag.String("state.dir", "", "journal of the deployments in progress (shared by the replicas)")
	rollout := flag.Duration("rollout", 5*time.Minute, "how long a deployment is in progress")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, *tokensFile, *stateDir, *rollout, logger); err != nil {
		logger.Error("regional API", "err", err)
		os.Exit(1)
	}
}

func run(listen, tokensFile, stateDir string, rollout time.Duration, logger *slog.Logger) error {
	if stateDir == "" || tokensFile == "" {
		return errors.New("--tokens and --state.dir are required")
	}
	f, err := os.Open(tokensFile)
	if err != nil {
		return err
	}
	tokens, err := parseTokens(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", tokensFile, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	s := newServer(tokens, stateDir, rollout, reg, logger)

	// In-flight deployments come back before anything is served.
	start := time.Now()
	n, err := s.resume()
	if err != nil {
		return fmt.Errorf("resume deployments: %w", err)
	}
	logger.Info("resumed deployments", "count", n, "took", time.Since(start))

	mux := http.NewServeMux()
	s.routes(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				s.finishRollouts(now)
			}
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	logger.Info("serving", "address", l.Addr().String(), "nodes", len(tokens))
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// parseTokens reads "TOKEN NODE" lines; blank lines and # comments are
// skipped. A token given twice is an error: it would name two nodes.
func parseTokens(r io.Reader) (map[string]string, error) {
	tokens := map[string]string{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		fields := strings.Fields(string(text))
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TOKEN NODE\"", line)
		}
		if !validName.MatchString(fields[1]) {
			return nil, fmt.Errorf("line %d: node name is not a DNS label", line)
		}
		if _, dup := tokens[fields[0]]; dup {
			return nil, fmt.Errorf("line %d: a token given twice", line)
		}
		tokens[fields[0]] = fields[1]
	}
	return tokens, sc.Err()
}
