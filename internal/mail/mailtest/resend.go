package mailtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FakeResendKey is the API key FakeResend accepts.
const FakeResendKey = "re_test_0123456789"

// ResendEmail is a POST /emails body, as Resend documents it (the fields
// mailslot sends).
type ResendEmail struct {
	From    string            `json:"from"`
	To      []string          `json:"-"`
	RawTo   json.RawMessage   `json:"to"`
	Subject string            `json:"subject"`
	HTML    string            `json:"html"`
	Text    string            `json:"text"`
	Headers map[string]string `json:"headers"`
}

// ResendRequest is one request the fake received.
type ResendRequest struct {
	Method, Path   string
	Authorization  string
	IdempotencyKey string
	ContentType    string
	Body           []byte
	Email          ResendEmail
	// Status is what the fake answered.
	Status int
}

type resendReply struct {
	status     int
	name, msg  string
	retryAfter int
	stall      bool
}

// FakeResend stands in for Resend's API (https://resend.com/docs/api-reference):
// POST /emails with a bearer key; 200 {"id"} on success; errors as
// {"statusCode","name","message"}; 401 missing_api_key, 403
// invalid_api_key, 422 missing_required_field; idempotency keys up to 256
// characters (400 invalid_idempotency_key), a repeated key with the same
// body answers the first id without sending again, with another body 409
// invalid_idempotent_request. Tests queue other answers with Fail or
// Stall.
type FakeResend struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	requests []ResendRequest
	replies  []resendReply
	byKey    map[string]keyed
	sent     []string // ids of the emails "sent"
	stalled  chan struct{}
}

type keyed struct {
	body []byte
	id   string
}

// NewFakeResend starts the fake; it stops when the test ends.
func NewFakeResend(tb testing.TB) *FakeResend {
	tb.Helper()
	f := &FakeResend{byKey: map[string]keyed{}, stalled: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	tb.Cleanup(func() {
		close(f.stalled)
		f.srv.Close()
	})
	return f
}

// Fail queues one error answer for the next request.
func (f *FakeResend) Fail(status int, name, message string) {
	f.FailRetryAfter(status, name, message, 0)
}

// FailRetryAfter queues an error answer with a Retry-After in seconds.
func (f *FakeResend) FailRetryAfter(status int, name, message string, seconds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, resendReply{status: status, name: name, msg: message, retryAfter: seconds})
}

// Stall makes the next request hang until its client gives up.
func (f *FakeResend) Stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, resendReply{stall: true})
}

// Requests are the requests received so far.
func (f *FakeResend) Requests() []ResendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ResendRequest(nil), f.requests...)
}

// Sent are the ids of the emails accepted and sent, each once.
func (f *FakeResend) Sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

func (f *FakeResend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := ResendRequest{
		Method: r.Method, Path: r.URL.Path, Body: body,
		Authorization:  r.Header.Get("Authorization"),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		ContentType:    r.Header.Get("Content-Type"),
	}
	if json.Unmarshal(body, &rec.Email) == nil {
		var one string
		if json.Unmarshal(rec.Email.RawTo, &rec.Email.To) != nil && json.Unmarshal(rec.Email.RawTo, &one) == nil {
			rec.Email.To = []string{one}
		}
	}

	f.mu.Lock()
	var reply *resendReply
	if len(f.replies) > 0 {
		reply = &f.replies[0]
		f.replies = f.replies[1:]
	}
	status, id, name, msg := f.decide(r, rec, reply)
	rec.Status = status
	f.requests = append(f.requests, rec)
	f.mu.Unlock()

	if reply != nil && reply.stall {
		select {
		case <-r.Context().Done():
		case <-f.stalled:
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if reply != nil && reply.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(reply.retryAfter))
	}
	w.WriteHeader(status)
	if status == http.StatusOK {
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"statusCode": status, "name": name, "message": msg})
}

// decide answers a request the way Resend documents; it runs under f.mu.
func (f *FakeResend) decide(r *http.Request, rec ResendRequest, reply *resendReply) (status int, id, name, msg string) {
	switch {
	case reply != nil && reply.stall:
		return 0, "", "", ""
	case reply != nil:
		return reply.status, "", reply.name, reply.msg
	case r.Method != http.MethodPost || r.URL.Path != "/emails":
		return http.StatusNotFound, "", "not_found", "The requested endpoint does not exist."
	case rec.Authorization == "":
		return http.StatusUnauthorized, "", "missing_api_key", "Missing API key in the authorization header."
	case rec.Authorization != "Bearer "+FakeResendKey:
		return http.StatusForbidden, "", "invalid_api_key", "API key is invalid."
	case len(rec.IdempotencyKey) > 256:
		return http.StatusBadRequest, "", "invalid_idempotency_key", "The key must be between 1-256 chars."
	}
	e := rec.Email
	if e.From == "" || len(e.To) == 0 || e.Subject == "" {
		return http.StatusUnprocessableEntity, "", "missing_required_field", "Missing `from`, `to` or `subject` field."
	}
	if !strings.Contains(rec.ContentType, "application/json") {
		return http.StatusBadRequest, "", "validation_error", "Content-Type must be application/json."
	}
	if k := rec.IdempotencyKey; k != "" {
		if prev, ok := f.byKey[k]; ok {
			if string(prev.body) != string(rec.Body) {
				return http.StatusConflict, "", "invalid_idempotent_request", "Same idempotency key used with a different request payload."
			}
			return http.StatusOK, prev.id, "", ""
		}
	}
	id = newID()
	f.sent = append(f.sent, id)
	if k := rec.IdempotencyKey; k != "" {
		f.byKey[k] = keyed{body: rec.Body, id: id}
	}
	return http.StatusOK, id, "", ""
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
