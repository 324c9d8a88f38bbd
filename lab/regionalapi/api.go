package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// TokenReviewPath is where the API servers' webhook token authenticator
// sends its TokenReviews: the Kubernetes API's own path.
const TokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// Limits on what a caller may send.
const (
	maxTokenReviewBytes = 64 << 10
	maxDeploymentBytes  = 8 << 20
)

// deployment is one deployment the provider rolls out to a cluster. While
// it is in progress the API holds its manifests and their rendering for
// the cluster in memory, and a journal entry on disk so a restart resumes
// it.
type deployment struct {
	Name      string    `json:"name"`
	Cluster   string    `json:"cluster"`
	Manifests string    `json:"manifests"`
	Accepted  time.Time `json:"accepted"`

	rendered []byte
}

// validName is a DNS label, as Kubernetes names are.
var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// server is the regional API: it authenticates every cluster's nodes and
// rolls out deployments.
type server struct {
	// tokens maps node tokens to node names.
	tokens   map[string]string
	stateDir string
	rollout  time.Duration
	logger   *slog.Logger

	mu          sync.Mutex
	deployments map[string]*deployment

	reviews    *prometheus.CounterVec
	inProgress prometheus.GaugeFunc
	held       prometheus.GaugeFunc
}

func newServer(tokens map[string]string, stateDir string, rollout time.Duration, reg prometheus.Registerer, logger *slog.Logger) *server {
	s := &server{tokens: tokens, stateDir: stateDir, rollout: rollout, logger: logger, deployments: map[string]*deployment{}}
	s.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regional_api_token_reviews_total",
		Help: "TokenReviews answered, by result: authenticated, rejected, bad_request.",
	}, []string{"result"})
	s.inProgress = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regional_api_deployments_in_progress",
		Help: "Deployments being rolled out.",
	}, func() float64 { n, _ := s.holding(); return float64(n) })
	s.held = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "regional_api_deployment_bytes",
		Help: "Bytes of manifests and renderings held for deployments in progress.",
	}, func() float64 { _, b := s.holding(); return float64(b) })
	reg.MustRegister(s.reviews, s.inProgress, s.held)
	return s
}

func (s *server) holding() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deployments {
		bytes += int64(len(d.Manifests) + len(d.rendered))
	}
	return len(s.deployments), bytes
}

func (s *server) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+TokenReviewPath, s.tokenReview)
	mux.HandleFunc("POST /v1/deployments", s.createDeployment)
	mux.HandleFunc("GET /v1/deployments/{name}", s.getDeployment)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
}

// tokenReview answers the webhook token authenticator: a known node token
// is that node (system:node:NAME in system:nodes, as the Node authorizer
// expects); anything else is not authenticated. Callers are not
// authenticated: the API servers reach it through the lab's plain-HTTP
// gateway on loopback, and client-go sends a kubeconfig's credentials only
// over TLS.
func (s *server) tokenReview(w http.ResponseWriter, r *http.Request) {
	var review authenticationv1.TokenReview
	if err := decodeJSON(w, r, maxTokenReviewBytes, &review); err != nil {
		s.reviews.WithLabelValues("bad_request").Inc()
		http.Error(w, "TokenReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	out := authenticationv1.TokenReview{
		TypeMeta:   metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		ObjectMeta: metav1.ObjectMeta{UID: review.UID},
	}
	if node, ok := s.tokens[review.Spec.Token]; ok && review.Spec.Token != "" {
		s.reviews.WithLabelValues("authenticated").Inc()
		out.Status = authenticationv1.TokenReviewStatus{
			Authenticated: true,
			User: authenticationv1.UserInfo{
				Username: "system:node:" + node,
				UID:      node,
				Groups:   []string{"system:nodes", "system:authenticated"},
			},
			Audiences: review.Spec.Audiences,
		}
	} else {
		s.reviews.WithLabelValues("rejected").Inc()
		out.Status = authenticationv1.TokenReviewStatus{Error: "unknown token"}
	}
	writeJSON(w, http.StatusOK, out)
}

// createDeployment accepts a deployment: journaled first, so that a restart
// resumes it, then held until its rollout ends. The same name again is
// the same deployment (clients retry).
func (s *server) createDeployment(w http.ResponseWriter, r *http.Request) {
	var d deployment
	if err := decodeJSON(w, r, maxDeploymentBytes, &d); err != nil {
		status := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "deployment: "+err.Error(), status)
		return
	}
	if !validName.MatchString(d.Name) || !validName.MatchString(d.Cluster) {
		http.Error(w, "deployment: name and cluster must be DNS labels", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	_, exists := s.deployments[d.Name]
	s.mu.Unlock()
	if exists {
		writeJSON(w, http.StatusOK, map[string]string{"name": d.Name, "status": "in_progress"})
		return
	}
	d.Accepted = time.Now().UTC()
	b, err := json.Marshal(d)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.stateDir, d.Name+".json"), b, 0o600)
	}
	if err != nil {
		s.logger.Error("journal", "deployment", d.Name, "err", err)
		http.Error(w, "cannot journal the deployment", http.StatusServiceUnavailable)
		return
	}
	s.hold(&d)
	writeJSON(w, http.StatusAccepted, map[string]string{"name": d.Name, "status": "in_progress"})
}

// hold renders a deployment for its cluster and keeps it until its rollout
// ends.
func (s *server) hold(d *deployment) {
	d.rendered = render(d.Manifests, d.Cluster)
	s.mu.Lock()
	s.deployments[d.Name] = d
	s.mu.Unlock()
}

// render is the provider's templating: the manifests with the cluster's
// name filled in, a copy of their size.
func render(manifests, cluster string) []byte {
	return []byte(strings.ReplaceAll(manifests, "{{cluster}}", cluster))
}

func (s *server) getDeployment(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	d, ok := s.deployments[name]
	s.mu.Unlock()
	switch {
	case ok:
		writeJSON(w, http.StatusOK, map[string]string{"name": name, "status": "in_progress", "accepted": d.Accepted.Format(time.RFC3339)})
	case validName.MatchString(name) && s.finished(name):
		writeJSON(w, http.StatusOK, map[string]string{"name": name, "status": "done"})
	default:
		http.Error(w, "no such deployment", http.StatusNotFound)
	}
}

// finished reports whether a deployment's journal entry is gone while the
// done marker remains.
func (s *server) finished(name string) bool {
	_, err := os.Stat(filepath.Join(s.stateDir, name+".done"))
	return err == nil
}

// resume loads every journaled deployment back into memory, as after a
// restart: what was in progress stays in progress.
func (s *server) resume() (int, error) {
	entries, err := os.ReadDir(s.stateDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.stateDir, e.Name()))
		if err != nil {
			return n, err
		}
		var d deployment
		if err := json.Unmarshal(b, &d); err != nil || !validName.MatchString(d.Name) {
			s.logger.Warn("skipping an unreadable journal entry", "file", e.Name(), "err", err)
			continue
		}
		s.hold(&d)
		n++
	}
	return n, nil
}

// finishRollouts ends the deployments accepted more than rollout ago: they
// leave memory and the journal, and a done marker stays.
func (s *server) finishRollouts(now time.Time) {
	s.mu.Lock()
	var done []string
	for name, d := range s.deployments {
		if now.Sub(d.Accepted) >= s.rollout {
			done = append(done, name)
			delete(s.deployments, name)
		}
	}
	s.mu.Unlock()
	for _, name := range done {
		if err := atomicfile.WriteFile(filepath.Join(s.stateDir, name+".done"), nil, 0o600); err != nil {
			s.logger.Error("journal", "deployment", name, "err", err)
		}
		if err := os.Remove(filepath.Join(s.stateDir, name+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.logger.Error("journal", "deployment", name, "err", err)
		}
	}
}

// decodeJSON reads one JSON value of at most limit bytes, strictly: unknown
// fields and trailing data are errors.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
