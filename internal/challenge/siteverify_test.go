package challenge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
)

const secret = "0x-test-secret-0123456789"

// provider builds one provider's fake and a verifier pointed at it.
type provider struct {
	name string
	fake func(testing.TB) *challengetest.Siteverify
	new  func(t testing.TB, url string, timeout time.Duration) challenge.Verifier
}

var providers = []provider{
	{
		name: "turnstile",
		fake: func(t testing.TB) *challengetest.Siteverify { return challengetest.NewTurnstile(t, secret) },
		new: func(t testing.TB, url string, timeout time.Duration) challenge.Verifier {
			t.Helper()
			v, err := challenge.NewTurnstile(challenge.TurnstileConfig{
				Secret: secret, Hostnames: []string{"www.site.example", "SITE.example"},
				Action: challengetest.Action, URL: url, Timeout: timeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			return v
		},
	},
	{
		name: "hcaptcha",
		fake: func(t testing.TB) *challengetest.Siteverify { return challengetest.NewHCaptcha(t, secret) },
		new: func(t testing.TB, url string, timeout time.Duration) challenge.Verifier {
			t.Helper()
			v, err := challenge.NewHCaptcha(challenge.HCaptchaConfig{
				Secret: secret, Hostnames: []string{"site.example"}, URL: url, Timeout: timeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			return v
		},
	},
}

// short is the timeout of verifiers whose fake may hang: long enough for
// a loaded machine to answer, short enough to keep the suite quick.
const short = 300 * time.Millisecond

func TestSiteverifyOutcomes(t *testing.T) {
	tests := []struct {
		outcome challengetest.Outcome
		want    map[string]string // provider → Result.String()
	}{
		{challengetest.Success, map[string]string{"turnstile": "passed", "hcaptcha": "passed"}},
		{challengetest.InvalidInput, map[string]string{"turnstile": "failed(invalid)", "hcaptcha": "failed(invalid)"}},
		{challengetest.TimeoutOrDuplicate, map[string]string{"turnstile": "failed(expired)", "hcaptcha": "failed(expired)"}},
		{challengetest.WrongHostname, map[string]string{"turnstile": "failed(hostname)", "hcaptcha": "failed(hostname)"}},
		// hCaptcha has no widget action: the verifier checks none.
		{challengetest.WrongAction, map[string]string{"turnstile": "failed(action)", "hcaptcha": "passed"}},
		{challengetest.ServerError, map[string]string{"turnstile": "unverified(status)", "hcaptcha": "unverified(status)"}},
		{challengetest.BadJSON, map[string]string{"turnstile": "unverified(bad-response)", "hcaptcha": "unverified(bad-response)"}},
		{challengetest.InternalError, map[string]string{"turnstile": "unverified(provider)", "hcaptcha": "unverified(provider)"}},
		{challengetest.Hang, map[string]string{"turnstile": "unverified(timeout)", "hcaptcha": "unverified(timeout)"}},
	}
	for _, p := range providers {
		fake := p.fake(t)
		v := p.new(t, fake.URL, short)
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.outcome.String(), func(t *testing.T) {
				token := fake.Issue(tt.outcome)
				r := v.Verify(context.Background(), token, challenge.Expect{IdempotencyKey: challenge.NewIdempotencyKey()})
				if got := r.String(); got != tt.want[p.name] {
					t.Errorf("outcome %s: got %s, want %s (error codes %v)", tt.outcome, got, tt.want[p.name], r.ErrorCodes)
				}
				if r.Verdict == challenge.Passed && r.Hostname != challengetest.Hostname {
					t.Errorf("passed with hostname %q, want %q", r.Hostname, challengetest.Hostname)
				}
				if r.Verdict == challenge.Passed && r.ChallengeTS.IsZero() {
					t.Error("passed without the challenge time")
				}
				if strings.Contains(fmt.Sprintf("%+v", r), token) || strings.Contains(fmt.Sprintf("%+v", r), secret) {
					t.Errorf("result carries the token or the secret: %+v", r)
				}
			})
		}
	}
}

func TestSiteverifyRequestShape(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake := p.fake(t)
			v := p.new(t, fake.URL, 0)
			token := fake.Issue()
			key := challenge.NewIdempotencyKey()
			if r := v.Verify(context.Background(), token, challenge.Expect{IdempotencyKey: key}); r.Verdict != challenge.Passed {
				t.Fatalf("verify: %s", r)
			}
			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("fake got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Method != http.MethodPost || req.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("request is %s %q, want a form-encoded POST", req.Method, req.ContentType)
			}
			if req.Form.Get("secret") != secret || req.Form.Get("response") != token {
				t.Errorf("form %v lacks the secret or the token", req.Form.Encode())
			}
			if req.Form.Has("remoteip") {
				t.Errorf("form sends remoteip %q; mailslot never sends the client's IP", req.Form.Get("remoteip"))
			}
			wantKey := ""
			if p.name == "turnstile" {
				wantKey = key
			}
			if got := req.Form.Get("idempotency_key"); got != wantKey {
				t.Errorf("idempotency_key = %q, want %q", got, wantKey)
			}
		})
	}
}

func TestHCaptchaSendsSiteKey(t *testing.T) {
	fake := challengetest.NewHCaptcha(t, secret)
	fake.SiteKey = "10000000-ffff-ffff-ffff-000000000001"
	for _, tt := range []struct {
		sitekey string
		want    string
	}{
		{fake.SiteKey, "passed"},
		{"20000000-ffff-ffff-ffff-000000000002", "unverified(config)"},
	} {
		v, err := challenge.NewHCaptcha(challenge.HCaptchaConfig{Secret: secret, SiteKey: tt.sitekey, Hostnames: []string{"site.example"}, URL: fake.URL})
		if err != nil {
			t.Fatal(err)
		}
		if got := v.Verify(context.Background(), fake.Issue(), challenge.Expect{}).String(); got != tt.want {
			t.Errorf("site key %s: got %s, want %s", tt.sitekey, got, tt.want)
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || reqs[0].Form.Get("sitekey") != fake.SiteKey {
		t.Errorf("requests %v do not carry the site key", reqs)
	}
}

func TestSiteverifyUnreachable(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			v := p.new(t, challengetest.Unreachable(t), 0)
			if got := v.Verify(context.Background(), "0.some-token", challenge.Expect{}).String(); got != "unverified(unreachable)" {
				t.Errorf("got %s, want unverified(unreachable)", got)
			}
		})
	}
}

func TestSiteverifyCallerGivesUp(t *testing.T) {
	fake := challengetest.NewTurnstile(t, secret)
	v := providers[0].new(t, fake.URL, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-fake.Hanging()
		cancel()
	}()
	if got := v.Verify(ctx, fake.Issue(challengetest.Hang), challenge.Expect{}).String(); got != "unverified(timeout)" {
		t.Errorf("got %s, want unverified(timeout)", got)
	}
}

func TestSiteverifyRefusesUnsent(t *testing.T) {
	fake := challengetest.NewTurnstile(t, secret)
	v := providers[0].new(t, fake.URL, 0)
	tests := []struct {
		name, token, key, want string
	}{
		{"empty token", "", "", "failed(missing)"},
		{"token too long", strings.Repeat("a", challenge.MaxTokenLen+1), "", "failed(malformed)"},
		{"idempotency key not a UUID", "0.token", "sign-up-7", "unverified(config)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := v.Verify(context.Background(), tt.token, challenge.Expect{IdempotencyKey: tt.key}).String(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("fake got %d requests; these must be refused before sending", n)
	}
}

func TestSiteverifySecretRefused(t *testing.T) {
	fake := challengetest.NewTurnstile(t, secret)
	v, err := challenge.NewTurnstile(challenge.TurnstileConfig{Secret: "wrong", Hostnames: []string{"site.example"}, URL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	r := v.Verify(context.Background(), fake.Issue(), challenge.Expect{})
	if r.String() != "unverified(config)" || r.Retryable() {
		t.Errorf("got %s (retryable %v), want unverified(config), not retryable: the visitor is not at fault", r, r.Retryable())
	}
}

func TestSiteverifyStatuses(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{http.StatusBadGateway, `{"success":true,"hostname":"site.example"}`, "unverified(status)"},
		{http.StatusTooManyRequests, `slow down`, "unverified(status)"},
		{http.StatusBadRequest, `{"success":false,"error-codes":["bad-request"]}`, "unverified(config)"},
		{http.StatusOK, `{"success":false,"error-codes":["some-new-code"]}`, "failed(invalid)"},
		{http.StatusOK, `{"success":false,"error-codes":["invalid-input-secret","invalid-input-response"]}`, "unverified(config)"},
		{http.StatusOK, `{"success":true,"hostname":"site.example","action":"signup"}` + strings.Repeat(" ", 70<<10), "unverified(bad-response)"},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tt.status)
			w.Write([]byte(tt.body))
		}))
		v := providers[0].new(t, srv.URL, 0)
		if got := v.Verify(context.Background(), "0.token", challenge.Expect{}).String(); got != tt.want {
			t.Errorf("%d %.60q: got %s, want %s", tt.status, tt.body, got, tt.want)
		}
		srv.Close()
	}
}

func TestRecheck(t *testing.T) {
	received := time.Now()
	tests := []struct {
		name     string
		provider int
		outcomes []challengetest.Outcome
		sameKey  bool
		first    string
		recheck  string
	}{
		// The answer was lost after Turnstile consumed the token: the same
		// idempotency key gets the first answer back.
		{"turnstile answer lost, same key", 0, []challengetest.Outcome{challengetest.Hang}, true, "unverified(timeout)", "passed"},
		{"turnstile answer lost, new key", 0, []challengetest.Outcome{challengetest.Hang}, false, "unverified(timeout)", "failed(expired)"},
		{"turnstile 5xx then up", 0, []challengetest.Outcome{challengetest.ServerError, challengetest.Success}, true, "unverified(status)", "passed"},
		{"hcaptcha 5xx then up", 1, []challengetest.Outcome{challengetest.ServerError, challengetest.Success}, true, "unverified(status)", "passed"},
		// hCaptcha has no idempotency key: a consumed token stays consumed.
		{"hcaptcha answer lost", 1, []challengetest.Outcome{challengetest.Hang}, true, "unverified(timeout)", "failed(invalid)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := providers[tt.provider]
			fake := p.fake(t)
			v := p.new(t, fake.URL, short)
			token := fake.Issue(tt.outcomes...)
			expect := challenge.Expect{Property: "site.example", IdempotencyKey: challenge.NewIdempotencyKey()}
			first := v.Verify(context.Background(), token, expect)
			if first.String() != tt.first || !first.Retryable() {
				t.Fatalf("first check: %s (retryable %v), want %s, retryable", first, first.Retryable(), tt.first)
			}
			if !tt.sameKey {
				expect.IdempotencyKey = challenge.NewIdempotencyKey()
			}
			expect.Now = received.Add(time.Minute)
			if got := challenge.Recheck(context.Background(), v, token, expect, received).String(); got != tt.recheck {
				t.Errorf("recheck: %s, want %s", got, tt.recheck)
			}
		})
	}
}

func TestRecheckPastLifetime(t *testing.T) {
	received := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i, p := range providers {
		fake := p.fake(t)
		v := p.new(t, fake.URL, 0)
		life := []time.Duration{challenge.TurnstileTokenLifetime, challenge.HCaptchaTokenLifetime}[i]
		token := fake.Issue(challengetest.ServerError, challengetest.Success)
		if got := challenge.Recheck(context.Background(), v, token, challenge.Expect{Now: received.Add(life)}, received).String(); got != "failed(expired)" {
			t.Errorf("%s: recheck at the lifetime: %s, want failed(expired)", p.name, got)
		}
		if n := len(fake.Requests()); n != 0 {
			t.Errorf("%s: recheck past the lifetime sent %d requests, want none", p.name, n)
		}
		if got := challenge.Recheck(context.Background(), v, token, challenge.Expect{Now: received.Add(life - time.Second)}, received).String(); got != "unverified(status)" {
			t.Errorf("%s: recheck within the lifetime: %s, want it asked (unverified(status))", p.name, got)
		}
	}
}

func TestSiteverifyConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  challenge.TurnstileConfig
		want string
	}{
		{"no secret", challenge.TurnstileConfig{Hostnames: []string{"a.example"}}, "secret is empty"},
		{"no hostname", challenge.TurnstileConfig{Secret: "s"}, "no expected hostname"},
		{"hostname with scheme", challenge.TurnstileConfig{Secret: "s", Hostnames: []string{"https://a.example"}}, "not a bare hostname"},
		{"bad url", challenge.TurnstileConfig{Secret: "s", Hostnames: []string{"a.example"}, URL: "ftp://x"}, "not an http(s) URL"},
		{"negative timeout", challenge.TurnstileConfig{Secret: "s", Hostnames: []string{"a.example"}, Timeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		_, err := challenge.NewTurnstile(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "configure turnstile: ") {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := challenge.NewHCaptcha(challenge.HCaptchaConfig{Secret: "s"}); err == nil || !strings.HasPrefix(err.Error(), "configure hcaptcha: ") {
		t.Errorf("hcaptcha without hostnames: %v", err)
	}
}
