// Package webhooktest is a real HTTP receiver for webhook tests: it
// records every request it gets and answers as the test tells it to.
package webhooktest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is one request the receiver got.
type Request struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Type                     string
	LeadID                   string
	Status                   int // what the receiver answered; 0 if it hung up
}

// Envelope is a delivery's body.
type Envelope struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Handler decides the answer to a request; returning 0 holds the request
// until the client gives up (a receiver slower than the timeout).
type Handler func(r Request) int

// Receiver is an httptest server that records requests.
type Receiver struct {
	*httptest.Server
	mu      sync.Mutex
	handler Handler
	reqs    []Request
	changed chan struct{}
}

// New starts a receiver answering with h (nil: 204) on a fresh port.
func New(tb testing.TB, h Handler) *Receiver {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return NewOn(tb, l, h)
}

// NewOn starts a receiver on l.
func NewOn(tb testing.TB, l net.Listener, h Handler) *Receiver {
	tb.Helper()
	rc := &Receiver{handler: h, changed: make(chan struct{})}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.Server.Listener.Close()
	rc.Server.Listener = l
	rc.Server.Start()
	tb.Cleanup(rc.Server.Close)
	return rc
}

// SetHandler changes how the receiver answers from now on.
func (rc *Receiver) SetHandler(h Handler) {
	rc.mu.Lock()
	rc.handler = h
	rc.mu.Unlock()
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Signature: r.Header.Get("webhook-signature"), Body: body}
	var env Envelope
	if json.Unmarshal(body, &env) == nil {
		req.Type = env.Type
		var data struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(env.Data, &data)
		req.LeadID = data.ID
	}
	rc.mu.Lock()
	h := rc.handler
	rc.mu.Unlock()
	status := http.StatusNoContent
	if h != nil {
		status = h(req)
	}
	req.Status = status
	rc.record(req)
	if status == 0 {
		<-r.Context().Done() // the client gave up
		return
	}
	w.WriteHeader(status)
}

func (rc *Receiver) record(r Request) {
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, r)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
}

// Requests returns a copy of what the receiver got, in arrival order.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.reqs...)
}

// Accepted returns the requests answered 2xx, in arrival order.
func (rc *Receiver) Accepted() []Request {
	var out []Request
	for _, r := range rc.Requests() {
		if r.Status >= 200 && r.Status < 300 {
			out = append(out, r)
		}
	}
	return out
}

// Changed returns a channel closed at the next request.
func (rc *Receiver) Changed() <-chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.changed
}
