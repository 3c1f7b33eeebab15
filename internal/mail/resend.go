package mail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ResendOptions tune a Resend transport; the zero value is production's.
type ResendOptions struct {
	// BaseURL is the API's root, default https://api.resend.com; tests
	// point it at a fake.
	BaseURL string
	// Timeout bounds one request, default 30s.
	Timeout time.Duration
	// Client is the HTTP client; default one with Timeout.
	Client *http.Client
}

// DefaultResendBaseURL is Resend's API.
const DefaultResendBaseURL = "https://api.resend.com"

// Resend is a Transport over Resend's HTTP API (POST /emails). Each send
// carries the message's IdempotencyKey, so Resend delivers a retried job
// once for 24 hours after the first attempt; that is why a timeout or a
// lost response is Temporary here, where SMTP would call it Uncertain.
// A dispatcher that retries later than 24 hours must treat such a
// failure as uncertain.
type Resend struct {
	endpoint string
	apiKey   string
	client   *http.Client
}

var _ Transport = (*Resend)(nil)

// NewResend makes a Resend transport with the API key.
func NewResend(apiKey string, opts ResendOptions) (*Resend, error) {
	if strings.TrimSpace(apiKey) == "" {
		return nil, errors.New("resend: the API key is empty")
	}
	if strings.ContainsAny(apiKey, "\r\n ") {
		return nil, errors.New("resend: the API key holds a space or a line break")
	}
	base := strings.TrimRight(cmpOr(opts.BaseURL, DefaultResendBaseURL), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("resend: the base URL is not an absolute http(s) URL")
	}
	c := opts.Client
	if c == nil {
		t := opts.Timeout
		if t <= 0 {
			t = 30 * time.Second
		}
		c = &http.Client{Timeout: t}
	}
	return &Resend{endpoint: base + "/emails", apiKey: apiKey, client: c}, nil
}

// ResendEmail is the body of POST /emails, as far as mailslot uses it.
// Resend sets its own Message-ID (its documentation offers no way to
// choose one); the job is recognised by the Idempotency-Key header.
type ResendEmail struct {
	From    string            `json:"from"`
	To      []string          `json:"to"`
	Subject string            `json:"subject"`
	HTML    string            `json:"html,omitempty"`
	Text    string            `json:"text,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// ResendError is Resend's error body.
type ResendError struct {
	StatusCode int    `json:"statusCode"`
	Name       string `json:"name"`
	Message    string `json:"message"`
}

// ResendEmailFor is the request body Send posts for m.
func ResendEmailFor(m *Message) ResendEmail {
	return ResendEmail{
		From:    formatAddressUTF8(m.From),
		To:      []string{formatAddressUTF8(m.To)},
		Subject: m.Subject,
		HTML:    m.HTML,
		Text:    m.Text,
		Headers: map[string]string{
			"List-Unsubscribe":      m.ListUnsubscribe,
			"List-Unsubscribe-Post": m.ListUnsubscribePost,
			"Auto-Submitted":        "auto-generated",
		},
	}
}

// Send posts m to Resend. Status codes map to classes: 2xx accepted;
// 400 and 422 (the request is invalid) permanent; 409 with
// invalid_idempotent_request (the key was used with another body, so an
// earlier attempt was accepted) uncertain; 429, 5xx and the other 4xx
// (401/403: a key or domain an operator must fix, which the message
// should outlive) temporary.
func (r *Resend) Send(ctx context.Context, m *Message) (Result, error) {
	body, err := json.Marshal(ResendEmailFor(m))
	if err != nil {
		return Result{}, &SendError{Class: Permanent, Op: "render", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return Result{}, &SendError{Class: Permanent, Op: "request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+r.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailslot")
	req.Header.Set("Idempotency-Key", m.IdempotencyKey)
	resp, err := r.client.Do(req)
	if err != nil {
		// url.Error names the endpoint only; the key is in a header.
		return Result{}, &SendError{Class: Temporary, Op: "request", Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Result{}, &SendError{Class: Temporary, Op: "response", Code: resp.StatusCode, Err: fmt.Errorf("read response: %w", err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var ok struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &ok); err != nil || ok.ID == "" {
			// Accepted, but we cannot tell which email it is.
			return Result{}, &SendError{Class: Uncertain, Op: "response", Code: resp.StatusCode, Err: errors.New("2xx without an email id")}
		}
		return Result{ID: ok.ID, Response: resp.Status}, nil
	}
	var re ResendError
	_ = json.Unmarshal(raw, &re)
	se := &SendError{Op: "response", Code: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	desc := strconv.Itoa(resp.StatusCode)
	if re.Name != "" {
		desc += " " + re.Name
	}
	if re.Message != "" {
		desc += ": " + re.Message
	}
	se.Err = redact(errors.New(desc), m.To.Address)
	switch {
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusUnprocessableEntity:
		se.Class = Permanent
	case resp.StatusCode == http.StatusConflict && re.Name == "invalid_idempotent_request":
		se.Class = Uncertain
	default:
		se.Class = Temporary
	}
	return Result{}, se
}

// Close releases idle connections.
func (r *Resend) Close() error {
	r.client.CloseIdleConnections()
	return nil
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
