package testenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Webhooks records what Alertmanager delivers to webhook receivers, one
// receiver per URL path.
type Webhooks struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string][]WebhookMessage
}

// WebhookMessage is the part of Alertmanager's webhook payload tests read.
type WebhookMessage struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// WebhooksForTest starts a recorder on loopback for t.
func WebhooksForTest(t testing.TB) *Webhooks {
	h := &Webhooks{got: map[string][]WebhookMessage{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got[r.URL.Path[1:]] = append(h.got[r.URL.Path[1:]], m)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// URL is the webhook URL of the named receiver.
func (h *Webhooks) URL(name string) string { return h.srv.URL + "/" + name }

// Received returns what the named receiver got so far.
func (h *Webhooks) Received(name string) []WebhookMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]WebhookMessage(nil), h.got[name]...)
}

// Count is how many notifications the named receiver got.
func (h *Webhooks) Count(name string) int { return len(h.Received(name)) }
