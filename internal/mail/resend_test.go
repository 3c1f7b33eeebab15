package mail_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
)

func newResend(tb testing.TB, f *mailtest.FakeResend, key string) *mail.Resend {
	tb.Helper()
	r, err := mail.NewResend(key, mail.ResendOptions{BaseURL: f.URL, Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// TestResendSend checks the request Resend receives and that a retry of
// the same job is delivered once.
func TestResendSend(t *testing.T) {
	f := mailtest.NewFakeResend(t)
	r := newResend(t, f, mailtest.FakeResendKey)
	m := compose(t, draft("r-1"))

	res, err := r.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	sent := f.Sent()
	if len(sent) != 1 || res.ID != sent[0] {
		t.Fatalf("Result.ID %q, fake sent %q", res.ID, sent)
	}
	req := f.Requests()[0]
	if req.Method != http.MethodPost || req.Path != "/emails" {
		t.Errorf("request %s %s", req.Method, req.Path)
	}
	if req.Authorization != "Bearer "+mailtest.FakeResendKey || !strings.HasPrefix(req.ContentType, "application/json") {
		t.Errorf("Authorization %q, Content-Type %q", req.Authorization, req.ContentType)
	}
	if req.IdempotencyKey != "mailslot-confirmation/r-1" {
		t.Errorf("Idempotency-Key = %q", req.IdempotencyKey)
	}
	e := req.Email
	if e.From != "Crème Brûlée Café <news@example.com>" || len(e.To) != 1 || e.To[0] != "Zoë Ñandú <zoe@example.org>" {
		t.Errorf("from %q, to %q", e.From, e.To)
	}
	if e.Subject != m.Subject || e.Text != m.Text || e.HTML != m.HTML {
		t.Error("subject or bodies differ from the composed message")
	}
	if e.Headers["List-Unsubscribe"] != "<"+testUnsubURL+">" || e.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Errorf("headers = %v", e.Headers)
	}

	// A retry (a new composition of the same job) is answered with the
	// same id and not sent again.
	res2, err := r.Send(context.Background(), compose(t, draft("r-1")))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if res2.ID != res.ID || len(f.Sent()) != 1 || len(f.Requests()) != 2 {
		t.Errorf("retry: id %q (first %q), %d sent, %d requests", res2.ID, res.ID, len(f.Sent()), len(f.Requests()))
	}

	// Quoting of a display name with specials survives the JSON form.
	d := draft("r-2")
	d.From.Name = `Acme, "The" Shop`
	if _, err := r.Send(context.Background(), compose(t, d)); err != nil {
		t.Fatal(err)
	}
	if got := f.Requests()[2].Email.From; got != `"Acme, \"The\" Shop" <news@example.com>` {
		t.Errorf("from = %q", got)
	}
}

func TestResendErrorClasses(t *testing.T) {
	tests := []struct {
		name       string
		prep       func(*mailtest.FakeResend)
		key        string
		class      mail.Class
		code       int
		retryAfter time.Duration
	}{
		{"validation error", func(f *mailtest.FakeResend) {
			f.Fail(422, "validation_error", "Invalid `to` field. zoe@example.org is not valid.")
		}, mailtest.FakeResendKey, mail.Permanent, 422, 0},
		{"bad request", func(f *mailtest.FakeResend) { f.Fail(400, "validation_error", "bad") }, mailtest.FakeResendKey, mail.Permanent, 400, 0},
		{"rate limited", func(f *mailtest.FakeResend) {
			f.FailRetryAfter(429, "rate_limit_exceeded", "Too many requests.", 2)
		}, mailtest.FakeResendKey, mail.Temporary, 429, 2 * time.Second},
		{"quota", func(f *mailtest.FakeResend) { f.Fail(429, "daily_quota_exceeded", "Quota.") }, mailtest.FakeResendKey, mail.Temporary, 429, 0},
		{"server error", func(f *mailtest.FakeResend) { f.Fail(500, "internal_server_error", "Oops.") }, mailtest.FakeResendKey, mail.Temporary, 500, 0},
		{"concurrent idempotent request", func(f *mailtest.FakeResend) {
			f.Fail(409, "concurrent_idempotent_requests", "In progress.")
		}, mailtest.FakeResendKey, mail.Temporary, 409, 0},
		{"key reused with another body", func(f *mailtest.FakeResend) {
			f.Fail(409, "invalid_idempotent_request", "Different payload.")
		}, mailtest.FakeResendKey, mail.Uncertain, 409, 0},
		{"wrong API key", func(*mailtest.FakeResend) {}, "re_wrong_key_123", mail.Temporary, 403, 0},
		{"timeout", func(f *mailtest.FakeResend) { f.Stall() }, mailtest.FakeResendKey, mail.Temporary, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mailtest.NewFakeResend(t)
			tt.prep(f)
			r := newResend(t, f, tt.key)
			_, err := r.Send(context.Background(), compose(t, draft("r-err")))
			se := sendErr(t, err)
			if se.Class != tt.class || se.Code != tt.code || se.RetryAfter != tt.retryAfter {
				t.Errorf("got %v (class %v, code %d, retry after %v), want %v %d %v", err, se.Class, se.Code, se.RetryAfter, tt.class, tt.code, tt.retryAfter)
			}
			if strings.Contains(err.Error(), "zoe@example.org") || strings.Contains(err.Error(), tt.key) {
				t.Errorf("error names the recipient or the key: %v", err)
			}
			if len(f.Sent()) != 0 {
				t.Errorf("the fake sent %d emails", len(f.Sent()))
			}
		})
	}

	t.Run("context deadline", func(t *testing.T) {
		f := mailtest.NewFakeResend(t)
		f.Stall()
		r := newResend(t, f, mailtest.FakeResendKey)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := r.Send(ctx, compose(t, draft("r-ctx")))
		if !mail.IsTemporary(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a temporary deadline error", err)
		}
	})
}

func TestNewResendRefusesBadConfig(t *testing.T) {
	for _, tt := range []struct{ key, base string }{
		{"", ""}, {"re x", ""}, {"re_1", "ftp://x"}, {"re_1", "not a url"},
	} {
		if _, err := mail.NewResend(tt.key, mail.ResendOptions{BaseURL: tt.base}); err == nil {
			t.Errorf("NewResend(%q, %q) accepted", tt.key, tt.base)
		}
	}
}

func TestParseResendFeedback(t *testing.T) {
	event := func(typ string, data map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"type": typ, "created_at": "2026-02-22T23:41:12.126Z", "data": data})
		return b
	}
	base := func(extra map[string]any) map[string]any {
		d := map[string]any{"email_id": "56761188-7520-42d8-8898-ff6fc54ce618", "to": []string{"zoe@example.org"}, "from": "news@example.com", "subject": "Hi"}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	tests := []struct {
		name    string
		body    []byte
		ok      bool
		wantErr bool
		kind    mail.FeedbackKind
		perm    bool
		subtype string
	}{
		{"hard bounce", event("email.bounced", base(map[string]any{"bounce": map[string]string{"type": "Permanent", "subType": "General", "message": "no such user"}})), true, false, mail.Bounce, true, "General"},
		{"suppressed", event("email.bounced", base(map[string]any{"bounce": map[string]string{"type": "Permanent", "subType": "Suppressed"}})), true, false, mail.Bounce, true, "Suppressed"},
		{"soft bounce", event("email.bounced", base(map[string]any{"bounce": map[string]string{"type": "Transient", "subType": "MailboxFull"}})), true, false, mail.Bounce, false, "MailboxFull"},
		{"undetermined bounce", event("email.bounced", base(map[string]any{"bounce": map[string]string{"type": "Undetermined"}})), true, false, mail.Bounce, false, ""},
		{"complaint", event("email.complained", base(nil)), true, false, mail.Complaint, true, ""},
		{"to as a string", event("email.complained", base(map[string]any{"to": "zoe@example.org"})), true, false, mail.Complaint, true, ""},
		{"delivered is not feedback", event("email.delivered", base(nil)), false, false, "", false, ""},
		{"bounce without details", event("email.bounced", base(nil)), false, true, "", false, ""},
		{"no email id", event("email.complained", base(map[string]any{"email_id": ""})), false, true, "", false, ""},
		{"no recipient", event("email.complained", base(map[string]any{"to": []string{}})), false, true, "", false, ""},
		{"no type", []byte(`{"data":{}}`), false, true, "", false, ""},
		{"not JSON", []byte(`<xml/>`), false, true, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb, ok, err := mail.ParseResendFeedback(tt.body)
			if (err != nil) != tt.wantErr || ok != tt.ok {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, tt.ok, tt.wantErr)
			}
			if !ok {
				return
			}
			if fb.Kind != tt.kind || fb.Permanent != tt.perm || fb.BounceSubType != tt.subtype {
				t.Errorf("feedback %+v", fb)
			}
			if fb.EmailID != "56761188-7520-42d8-8898-ff6fc54ce618" || len(fb.To) != 1 || fb.To[0] != "zoe@example.org" {
				t.Errorf("feedback %+v", fb)
			}
			if !fb.At.Equal(time.Date(2026, 2, 22, 23, 41, 12, 126e6, time.UTC)) {
				t.Errorf("At = %v", fb.At)
			}
		})
	}
}
