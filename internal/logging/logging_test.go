package logging_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/testsync"
)

// emailValuer is a LogValuer that resolves to personal data.
type emailValuer string

func (e emailValuer) LogValue() slog.Value { return slog.StringValue("contact " + string(e)) }

// lead is a struct a careless call site might log whole.
type lead struct{ Email, Name string }

func TestRedaction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		log    func(l *slog.Logger)
		secret []string // none of these may appear
		keep   []string // all of these must appear
	}{
		{
			name:   "email in the message",
			log:    func(l *slog.Logger) { l.Info("sign-up from Bob.Smith+news@Example.COM accepted") },
			secret: []string{"Bob.Smith", "Example.COM", "@"},
			keep:   []string{"sign-up from", "accepted"},
		},
		{
			name: "unusual emails",
			log: func(l *slog.Logger) {
				l.Info("x", "detail", "to josé@bücher.example, o'brien@example.com and a+b/c=d@example.com")
			},
			secret: []string{"josé", "bücher", "o'brien", "a+b/c=d", "@"},
		},
		{
			name:   "IPv4",
			log:    func(l *slog.Logger) { l.Warn("refused 203.0.113.7:5555", "peer", "from 198.51.100.23") },
			secret: []string{"203.0.113.7", "198.51.100.23", "203.0.113", "198.51.100"},
			keep:   []string{"refused", "from"},
		},
		{
			name: "IPv6",
			log: func(l *slog.Logger) {
				l.Warn("x", "a", "2001:db8::7", "b", "[2001:db8:85a3::8a2e:370:7334]:443", "c", "fe80::1%eth0",
					"d", "2001:db8::1", "e", "::ffff:203.0.113.7", "f", "2001:0db8:0000:0000:0000:0000:0000:0001")
			},
			secret: []string{"2001:db8", "85a3", "8a2e", "fe80", "203.0.113", "2001:0db8"},
		},
		{
			name:   "bearer token",
			log:    func(l *slog.Logger) { l.Info("auth failed", "header", "Authorization: Bearer abc.DEF-ghi_123") },
			secret: []string{"abc.DEF-ghi_123", "abc.DEF"},
			keep:   []string{"auth failed", "Bearer"},
		},
		{
			name: "database URL with password",
			log: func(l *slog.Logger) {
				l.Error("connect", "err", errors.New("dial postgres://mailslot:s3cr3t-pw@db.internal:5432/mailslot failed"))
			},
			secret: []string{"s3cr3t-pw", "mailslot:s3cr3t"},
			keep:   []string{"db.internal", "failed"},
		},
		{
			name: "token in a query string",
			log: func(l *slog.Logger) {
				l.Info("request", "path", "/v1/unsubscribe?token=tok_9f8e7d6c&x=1", "other", "GET /v1/confirm?a=1&Token=AbC123")
			},
			secret: []string{"tok_9f8e7d6c", "AbC123"},
			keep:   []string{"/v1/unsubscribe", "x=1"},
		},
		{
			name: "error wrapping an email",
			log: func(l *slog.Logger) {
				err := fmt.Errorf("store lead: %w", fmt.Errorf("unique violation on ann@example.com"))
				l.Error("submission failed", logging.KeyErr, err)
			},
			secret: []string{"ann@example.com"},
			keep:   []string{"store lead", "unique violation"},
		},
		{
			name: "sensitive keys",
			log: func(l *slog.Logger) {
				l.Info("x", "email", "plain-text-value-1", "admin_token", "plain-text-value-2", "client_ip", "plain-text-value-3",
					"database_url", "plain-text-value-4", "Authorization", "plain-text-value-5", "ip-pepper", "plain-text-value-6",
					"user.name", "plain-text-value-7")
			},
			secret: []string{"plain-text-value"},
			keep:   []string{`"email":"[redacted]"`, `"admin_token":"[redacted]"`, `"client_ip":"[redacted]"`, `"database_url":"[redacted]"`},
		},
		{
			name: "sensitive keys in a group and in With",
			log: func(l *slog.Logger) {
				l.With("client_ip", "203.0.113.7").Info("x", slog.Group("lead", "email", "ann@example.com"))
			},
			secret: []string{"203.0.113.7", "ann@example.com"},
		},
		{
			name: "log valuer, stringer and struct",
			log: func(l *slog.Logger) {
				l.Info("x", "v", emailValuer("ann@example.com"), "u", &url.URL{Scheme: "https", User: url.UserPassword("u", "pw-123"), Host: "h.example"}, "s", lead{"bob@example.com", "Bob"})
			},
			secret: []string{"ann@example.com", "pw-123", "bob@example.com", "Bob"},
		},
		{
			name: "ordinary attributes survive",
			log: func(l *slog.Logger) {
				l.Info("request", logging.KeyRoute, "/v1/leads", logging.KeyStatus, 202, "node_id", "edge-yyz-1", "region", "yyz",
					"listen", "127.0.0.1:8080", "duration_ms", 1.5)
			},
			keep: []string{`"msg":"request"`, `"route":"/v1/leads"`, `"status":202`, `"node_id":"edge-yyz-1"`, `"region":"yyz"`,
				`"listen":"127.0.0.1:8080"`, `"duration_ms":1.5`, `"level":"INFO"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(logging.New(&buf, slog.LevelDebug))
			out := buf.String()
			if out == "" {
				t.Fatal("nothing logged")
			}
			for _, s := range tt.secret {
				if strings.Contains(out, s) {
					t.Errorf("log holds %q:\n%s", s, out)
				}
			}
			for _, s := range tt.keep {
				if !strings.Contains(out, s) {
					t.Errorf("log lost %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"nothing to hide", "nothing to hide"},
		{"mail a@example.com now", "mail [redacted] now"},
		{"peer 203.0.113.7:80", "peer [redacted]:80"},
		{"peer 2001:db8::1 gone", "peer [redacted] gone"},
		{"listening on [::]:8080 and ::1", "listening on [::]:8080 and ::1"},
		{"Bearer xyz", "Bearer [redacted]"},
		{"https://u:p@h.example/x", "https://[redacted]@h.example/x"},
		{"?token=abc&b=2", "?token=[redacted]&b=2"},
	}
	for _, tt := range tests {
		if got := logging.Scrub(tt.in); got != tt.want {
			t.Errorf("Scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestServerLogsNoSecrets drives a real api.Server, logging at debug
// level, with requests that carry an email, client addresses, bearer and
// query tokens, in good and bad requests, up to a full outbox; then looks
// for each of them in the log.
func TestServerLogsNoSecrets(t *testing.T) {
	t.Parallel()
	const (
		email      = "leaky.person@example.com"
		socketIP   = "203.0.113.7"
		flyIP      = "198.51.100.77"
		socketIPv6 = "2001:db8::77"
		bearer     = "tok-secret-123"
		queryToken = "query-secret-456"
		wrongAdmin = "wrong-token-789"
	)
	var sink testsync.Buffer
	e := edgetest.NewEdge(t, map[string]string{
		"MAILSLOT_CLIENT_IP_HEADER": "Fly-Client-IP",
		"MAILSLOT_OUTBOX_MAX_ROWS":  "4",
		"MAILSLOT_RATE_RPS":         "0.001",
		"MAILSLOT_RATE_BURST":       "30",
	}, func(o *api.Options) { o.Logger = logging.New(&sink, slog.LevelDebug) })

	send := func(method, target, contentType, body, remote string, header ...string) int {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.RemoteAddr = remote
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return edgetest.Serve(e.Public, req).Code
	}
	sock := socketIP + ":4444"
	sock6 := "[" + socketIPv6 + "]:4444"
	statuses := []int{
		send("POST", "/v1/leads", "application/json", `{"email":"`+email+`","property":"p"}`, sock,
			"Fly-Client-IP", flyIP, "Authorization", "Bearer "+bearer),
		send("POST", "/v1/leads?token="+queryToken, "application/x-www-form-urlencoded", "email="+url.QueryEscape(email)+"&property=p", sock6),
		send("POST", "/v1/leads", "application/json", `{"email":"`+email+`","property":"bad prop","`+email+`":"x"}`, sock, "Fly-Client-IP", flyIP),
		send("POST", "/v1/leads", "application/json", `{"email":"`+email+`",`, sock6),
		send("POST", "/v1/leads", "text/xml", `<email>`+email+`</email>`, sock),
		send("POST", "/v1/leads", "application/json", `{"email":"`+email+`","name":"`+strings.Repeat("x", 20<<10)+`"}`, sock),
		send("POST", "/v1/events?token="+queryToken, "text/plain", `{"type":"click","property":"p","props":{"e":"`+email+`"}}`, sock),
		send("GET", "/v1/sync/status?token="+queryToken, "", "", sock, "Authorization", "Bearer "+wrongAdmin),
		send("GET", "/v1/sync/status", "", "", sock, "Authorization", "Bearer "+edgetest.AdminToken),
		send("GET", "/v1/nope?token="+queryToken+"&email="+url.QueryEscape(email), "", "", sock6),
		send("DELETE", "/v1/leads?email="+url.QueryEscape(email), "", "", sock),
	}
	// Fill the outbox past its limit, so that refusals are logged too, and
	// spend one client's burst, so that rate limiting is.
	for i := range 40 {
		statuses = append(statuses, send("POST", "/v1/leads", "application/json",
			fmt.Sprintf(`{"email":"n%d.%s","property":"p"}`, i, email), sock6, "Authorization", "Bearer "+bearer))
	}
	seen := map[int]bool{}
	for _, s := range statuses {
		seen[s] = true
	}
	for _, s := range []int{202, 303, 400, 401, 403, 404, 405, 413, 415, 422, 429, 503} {
		if s == 401 {
			continue // not sent: every admin request above carries a token
		}
		if !seen[s] {
			t.Errorf("no request got %d (statuses %v): the test no longer covers that path", s, statuses)
		}
	}

	out := sink.String()
	if !strings.Contains(out, `"route":"/v1/leads"`) || !strings.Contains(out, `"status":422`) || !strings.Contains(out, `"status":503`) {
		t.Fatalf("the log does not show the requests, so the test proves nothing:\n%s", out)
	}
	for _, s := range []string{email, "leaky.person", socketIP, flyIP, socketIPv6, bearer, queryToken, wrongAdmin,
		edgetest.AdminToken, edgetest.IPPepper, edgetest.TokenKey} {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q", s)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}
