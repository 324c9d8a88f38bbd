package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
)

func newTestServer(t *testing.T) (*server, *httptest.Server) {
	t.Helper()
	s := newServer(map[string]string{"tok-a": "node-a"}, t.TempDir(), time.Minute, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	s.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, srv
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The review the API server's webhook authenticator sends, and what it
// needs back: a node's identity for the Node authorizer.
func TestTokenReview(t *testing.T) {
	_, srv := newTestServer(t)
	review := func(token string) authenticationv1.TokenReview {
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"creationTimestamp":null},"spec":{"token":"` + token + `"},"status":{"user":{}}}`
		code, out := post(t, srv.URL+TokenReviewPath, body)
		require.Equal(t, http.StatusOK, code, out)
		var r authenticationv1.TokenReview
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.Equal(t, "TokenReview", r.Kind)
		return r
	}
	r := review("tok-a")
	require.True(t, r.Status.Authenticated)
	require.Equal(t, "system:node:node-a", r.Status.User.Username)
	require.Equal(t, []string{"system:nodes", "system:authenticated"}, r.Status.User.Groups)
	r = review("tok-b")
	require.False(t, r.Status.Authenticated)
	require.NotContains(t, r.Status.Error, "tok-b", "a token never comes back")
	require.False(t, review("").Status.Authenticated)
	for _, bad := range []string{"", "{", `{"spec":{"token":"tok-a"}} {}`, `{"spec":{"nope":1}}`, strings.Repeat("x", maxTokenReviewBytes+1)} {
		code, _ := post(t, srv.URL+TokenReviewPath, bad)
		require.Equal(t, http.StatusBadRequest, code, "%.40q", bad)
	}
}

func FuzzTokenReview(f *testing.F) {
	f.Add(`{"spec":{"token":"tok-a"}}`)
	f.Add(`{"spec":{"token":"tok-a","audiences":["x"]},"metadata":{"uid":"u"}}`)
	s := newServer(map[string]string{"tok-a": "node-a"}, f.TempDir(), time.Minute, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		s.tokenReview(w, httptest.NewRequest(http.MethodPost, TokenReviewPath, strings.NewReader(body)))
		if w.Code != http.StatusOK {
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d", w.Code)
			}
			return
		}
		var r authenticationv1.TokenReview
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Status.Authenticated && r.Status.User.Username != "system:node:node-a" {
			t.Fatalf("authenticated as %q", r.Status.User.Username)
		}
	})
}

func TestDeploymentsAreJournaledHeldAndFinished(t *testing.T) {
	s, srv := newTestServer(t)
	body := `{"name":"app-1","cluster":"cluster-1","manifests":"kind: Deployment # {{cluster}}"}`
	code, out := post(t, srv.URL+"/v1/deployments", body)
	require.Equal(t, http.StatusAccepted, code, out)
	code, _ = post(t, srv.URL+"/v1/deployments", body)
	require.Equal(t, http.StatusOK, code, "a retry is the same deployment")
	require.FileExists(t, filepath.Join(s.stateDir, "app-1.json"))
	n, held := s.holding()
	require.Equal(t, 1, n)
	require.EqualValues(t, len("kind: Deployment # {{cluster}}")+len("kind: Deployment # cluster-1"), held)

	get := func(name string) (int, string) {
		resp, err := http.Get(srv.URL + "/v1/deployments/" + name)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, out = get("app-1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, out, "in_progress")

	// A restart resumes it from the journal.
	s2 := newServer(nil, s.stateDir, time.Minute, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	resumed, err := s2.resume()
	require.NoError(t, err)
	require.Equal(t, 1, resumed)
	n, _ = s2.holding()
	require.Equal(t, 1, n)

	s.finishRollouts(time.Now().Add(time.Hour))
	n, _ = s.holding()
	require.Zero(t, n)
	require.NoFileExists(t, filepath.Join(s.stateDir, "app-1.json"))
	code, out = get("app-1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, out, "done")
	code, _ = get("app-2")
	require.Equal(t, http.StatusNotFound, code)

	for _, bad := range []string{`{"name":"../x","cluster":"c"}`, `{"name":"a","cluster":""}`, `{"name":"a","cluster":"c","extra":1}`, `[]`} {
		code, _ := post(t, srv.URL+"/v1/deployments", bad)
		require.Equal(t, http.StatusBadRequest, code, bad)
	}
	code, _ = post(t, srv.URL+"/v1/deployments", `{"name":"big","cluster":"c","manifests":"`+strings.Repeat("x", maxDeploymentBytes)+`"}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
}

func FuzzDeployment(f *testing.F) {
	f.Add(`{"name":"app-1","cluster":"cluster-1","manifests":"x"}`)
	s := newServer(nil, f.TempDir(), time.Minute, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		s.createDeployment(w, httptest.NewRequest(http.MethodPost, "/v1/deployments", strings.NewReader(body)))
		switch w.Code {
		case http.StatusAccepted, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d", w.Code)
		}
		entries, err := os.ReadDir(s.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.ContainsAny(e.Name(), "/\\") || strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), ".tmp") {
				t.Fatalf("journal entry %q", e.Name())
			}
		}
	})
}

func TestParseTokens(t *testing.T) {
	got, err := parseTokens(strings.NewReader("# tokens\n\nabc node-1\n  def   node-2  \n"))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"abc": "node-1", "def": "node-2"}, got)
	for _, bad := range []string{"abc\n", "abc node-1 x\n", "abc Node_1\n", "abc n1\nabc n2\n"} {
		_, err := parseTokens(strings.NewReader(bad))
		require.Error(t, err, bad)
		require.NotContains(t, err.Error(), "abc", "tokens never reach an error message")
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add("abc node-1\n")
	f.Fuzz(func(t *testing.T, in string) {
		tokens, err := parseTokens(strings.NewReader(in))
		if err != nil {
			return
		}
		for tok, node := range tokens {
			if tok == "" || !validName.MatchString(node) {
				t.Fatalf("%q -> %q", tok, node)
			}
		}
	})
}
