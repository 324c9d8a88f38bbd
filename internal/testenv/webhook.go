package testenv

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Webhooks records what Alertmanager delivers to webhook receivers, one
// receiver per URL path.
type Webhooks struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string][]WebhookMessage
}

// WebhookMessage is the part of Alertmanager's webhook payload tests read,
// and when it arrived.
type WebhookMessage struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
	// Received is when the recorder got it (not part of the payload).
	Received time.Time `json:"-"`
}

// StartWebhooks starts a recorder on a free loopback port; Close stops it.
func StartWebhooks() (*Webhooks, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &Webhooks{got: map[string][]WebhookMessage{}}
	h.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(h.record), ReadHeaderTimeout: 10 * time.Second}}
	h.srv.Start()
	return h, nil
}

// WebhooksForTest starts a recorder on loopback for t.
func WebhooksForTest(t testing.TB) *Webhooks {
	h, err := StartWebhooks()
	if err != nil {
		t.Fatalf("start webhook recorder: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func (h *Webhooks) record(w http.ResponseWriter, r *http.Request) {
	var m WebhookMessage
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m.Received = time.Now()
	h.mu.Lock()
	h.got[r.URL.Path[1:]] = append(h.got[r.URL.Path[1:]], m)
	h.mu.Unlock()
}

// Close stops the recorder.
func (h *Webhooks) Close() { h.srv.Close() }

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
