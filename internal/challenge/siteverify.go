package challenge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The providers' siteverify endpoints.
const (
	TurnstileURL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
	HCaptchaURL  = "https://api.hcaptcha.com/siteverify"
)

const (
	// DefaultTimeout bounds one siteverify call. A sign-up waits for it,
	// so it is short; past it the sign-up is stored unverified.
	DefaultTimeout = 3 * time.Second
	// MaxTokenLen is the longest token sent to a provider (Turnstile
	// documents 2048 characters); a longer one is refused unsent.
	MaxTokenLen = 2048
	// maxAnswer bounds how much of a siteverify answer is read.
	maxAnswer = 64 << 10
)

// TurnstileConfig configures the Turnstile verifier of one property.
type TurnstileConfig struct {
	Secret Secret
	// Hostnames are the hostnames the widget may be solved on (compared
	// without case). At least one is required.
	Hostnames []string
	// Action, when set, is the widget action every token must carry.
	Action string
	// URL is the siteverify endpoint; empty means TurnstileURL.
	URL string
	// Timeout bounds one call; zero means DefaultTimeout.
	Timeout time.Duration
	// Client sends the requests; nil means a client of our own.
	Client *http.Client
}

// HCaptchaConfig configures the hCaptcha verifier of one property.
type HCaptchaConfig struct {
	Secret Secret
	// SiteKey, when set, is sent so that hCaptcha refuses a token solved
	// for another site key.
	SiteKey string
	// Hostnames are the hostnames the widget may be solved on (compared
	// without case). At least one is required.
	Hostnames []string
	// URL is the siteverify endpoint; empty means HCaptchaURL.
	URL string
	// Timeout bounds one call; zero means DefaultTimeout.
	Timeout time.Duration
	// Client sends the requests; nil means a client of our own.
	Client *http.Client
}

// Turnstile verifies Cloudflare Turnstile tokens.
type Turnstile struct{ sv siteverify }

// HCaptcha verifies hCaptcha tokens.
type HCaptcha struct{ sv siteverify }

// NewTurnstile checks cfg and returns its verifier.
func NewTurnstile(cfg TurnstileConfig) (*Turnstile, error) {
	sv, err := newSiteverify(KindTurnstile, cfg.Secret, cfg.Hostnames, cfg.URL, TurnstileURL, cfg.Timeout, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("configure turnstile: %w", err)
	}
	sv.action = cfg.Action
	return &Turnstile{sv: sv}, nil
}

// NewHCaptcha checks cfg and returns its verifier.
func NewHCaptcha(cfg HCaptchaConfig) (*HCaptcha, error) {
	sv, err := newSiteverify(KindHCaptcha, cfg.Secret, cfg.Hostnames, cfg.URL, HCaptchaURL, cfg.Timeout, cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("configure hcaptcha: %w", err)
	}
	sv.sitekey = cfg.SiteKey
	return &HCaptcha{sv: sv}, nil
}

// Kind returns KindTurnstile.
func (*Turnstile) Kind() Kind { return KindTurnstile }

// Kind returns KindHCaptcha.
func (*HCaptcha) Kind() Kind { return KindHCaptcha }

// Verify asks Turnstile about token. It sends the secret, the token and
// expect.IdempotencyKey, never the client's IP (see the package doc).
func (t *Turnstile) Verify(ctx context.Context, token string, expect Expect) Result {
	return t.sv.verify(ctx, token, expect.IdempotencyKey)
}

// Verify asks hCaptcha about token. It sends the secret, the token and
// the site key if configured, never the client's IP (see the package doc).
func (h *HCaptcha) Verify(ctx context.Context, token string, _ Expect) Result {
	return h.sv.verify(ctx, token, "")
}

// String names the verifier without its secret.
func (t *Turnstile) String() string { return t.sv.String() }

// String names the verifier without its secret.
func (h *HCaptcha) String() string { return h.sv.String() }

// LogValue logs the verifier without its secret.
func (t *Turnstile) LogValue() slog.Value { return t.sv.LogValue() }

// LogValue logs the verifier without its secret.
func (h *HCaptcha) LogValue() slog.Value { return h.sv.LogValue() }

// siteverify is what Turnstile and hCaptcha share: their APIs take the
// same form and answer the same JSON.
type siteverify struct {
	kind      Kind
	url       string
	secret    Secret
	hostnames []string // lowercased
	action    string   // Turnstile only
	sitekey   string   // hCaptcha only
	timeout   time.Duration
	client    *http.Client
}

func newSiteverify(kind Kind, secret Secret, hostnames []string, rawURL, defaultURL string, timeout time.Duration, client *http.Client) (siteverify, error) {
	if secret == "" {
		return siteverify{}, errors.New("secret is empty")
	}
	if len(hostnames) == 0 {
		return siteverify{}, errors.New("no expected hostname")
	}
	hosts := make([]string, 0, len(hostnames))
	for _, h := range hostnames {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || strings.ContainsAny(h, "/: ") {
			return siteverify{}, fmt.Errorf("expected hostname %q is not a bare hostname", h)
		}
		hosts = append(hosts, h)
	}
	if rawURL == "" {
		rawURL = defaultURL
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return siteverify{}, fmt.Errorf("siteverify URL %q is not an http(s) URL", rawURL)
	}
	if timeout < 0 {
		return siteverify{}, fmt.Errorf("timeout %v is negative", timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return siteverify{kind: kind, url: rawURL, secret: secret, hostnames: hosts, timeout: timeout, client: client}, nil
}

func (s *siteverify) String() string {
	return fmt.Sprintf("%s(%s)", s.kind, strings.Join(s.hostnames, ","))
}

func (s *siteverify) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", s.kind.String()), slog.Any("hostnames", s.hostnames))
}

// answer is siteverify's JSON, the fields both providers document.
type answer struct {
	Success     bool     `json:"success"`
	ErrorCodes  []string `json:"error-codes"`
	ChallengeTS string   `json:"challenge_ts"`
	Hostname    string   `json:"hostname"`
	Action      string   `json:"action"` // Turnstile
	CData       string   `json:"cdata"`  // Turnstile
}

func (s *siteverify) verify(ctx context.Context, token, idempotencyKey string) Result {
	if token == "" {
		return failed(ReasonMissing)
	}
	if len(token) > MaxTokenLen {
		return failed(ReasonMalformed)
	}
	form := url.Values{"secret": {string(s.secret)}, "response": {token}}
	if s.kind == KindTurnstile && idempotencyKey != "" {
		if !isUUID(idempotencyKey) {
			// Turnstile wants a UUID; anything else is our bug, not the
			// visitor's.
			return unverified(ReasonConfig)
		}
		form.Set("idempotency_key", idempotencyKey)
	}
	if s.sitekey != "" {
		form.Set("sitekey", s.sitekey)
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return unverified(ReasonConfig)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return unverified(transportReason(ctx, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return unverified(transportReason(ctx, err))
	}
	if resp.StatusCode >= 500 {
		return unverified(ReasonStatus)
	}
	var a answer
	if len(body) > maxAnswer || json.Unmarshal(body, &a) != nil {
		if resp.StatusCode != http.StatusOK {
			return unverified(ReasonStatus)
		}
		return unverified(ReasonResponse)
	}
	if resp.StatusCode != http.StatusOK && len(a.ErrorCodes) == 0 {
		return unverified(ReasonStatus)
	}
	r := s.judge(a)
	r.Hostname, r.Action, r.ErrorCodes = a.Hostname, a.Action, a.ErrorCodes
	if ts, err := time.Parse(time.RFC3339, a.ChallengeTS); err == nil {
		r.ChallengeTS = ts
	}
	return r
}

// judge maps siteverify's answer to a verdict.
func (s *siteverify) judge(a answer) Result {
	if !a.Success {
		return unsuccessful(a.ErrorCodes)
	}
	if !s.hostnameOK(a.Hostname) {
		return failed(ReasonHostname)
	}
	if s.action != "" && a.Action != s.action {
		return failed(ReasonAction)
	}
	return passed()
}

func (s *siteverify) hostnameOK(h string) bool {
	for _, want := range s.hostnames {
		if strings.EqualFold(h, want) {
			return true
		}
	}
	return false
}

// unsuccessful maps the error codes of an answer with success false.
// Codes that blame mailslot's request or secret, or the provider itself,
// leave the sign-up unverified: the visitor did nothing wrong. Anything
// else, including codes not documented yet, refuses the token.
func unsuccessful(codes []string) Result {
	for _, c := range codes {
		switch c {
		case "missing-input-secret", "invalid-input-secret", "sitekey-secret-mismatch",
			"invalid-sitekey", "bad-request", "missing-remoteip", "invalid-remoteip",
			"not-using-dummy-passcode", "not-using-dummy-secret":
			return unverified(ReasonConfig)
		case "internal-error":
			return unverified(ReasonProvider)
		}
	}
	for _, c := range codes {
		switch c {
		case "timeout-or-duplicate", "expired-input-response":
			return failed(ReasonExpired)
		case "already-seen-response":
			return failed(ReasonUsed)
		case "missing-input-response":
			return failed(ReasonMissing)
		}
	}
	return failed(ReasonInvalid)
}

// transportReason tells a timeout (ours or the caller's) from a
// connection that could not be made or broke.
func transportReason(ctx context.Context, err error) Reason {
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return ReasonTimeout
	}
	return ReasonUnreachable
}
