package challenge_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/challenge"
)

func TestVerdictNames(t *testing.T) {
	tests := []struct {
		v    challenge.Verdict
		name string
	}{
		{challenge.Passed, "passed"},
		{challenge.Failed, "failed"},
		{challenge.Unverified, "unverified"},
		{challenge.Replayed, "replayed"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.v, got, tt.name)
		}
		back, err := challenge.ParseVerdict(tt.name)
		if err != nil || back != tt.v {
			t.Errorf("ParseVerdict(%q) = %v, %v; want %v", tt.name, back, err, tt.v)
		}
		text, err := tt.v.MarshalText()
		if err != nil || string(text) != tt.name {
			t.Errorf("MarshalText(%v) = %q, %v", tt.v, text, err)
		}
	}
	var zero challenge.Verdict
	if zero != challenge.Unverified {
		t.Errorf("zero Verdict is %v, want unverified (no mail for a result never filled in)", zero)
	}
	if _, err := challenge.ParseVerdict("ok"); err == nil || !strings.Contains(err.Error(), "want passed, failed, unverified or replayed") {
		t.Errorf("ParseVerdict(ok) error = %v, want one naming the verdicts", err)
	}
	if _, err := challenge.Verdict(9).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown verdict succeeded")
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want challenge.Kind
	}{
		{"none", challenge.KindNone},
		{"turnstile", challenge.KindTurnstile},
		{" Turnstile ", challenge.KindTurnstile},
		{"hcaptcha", challenge.KindHCaptcha},
		{"HCAPTCHA", challenge.KindHCaptcha},
		{"pow", challenge.KindPoW},
	}
	for _, tt := range tests {
		got, err := challenge.ParseKind(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != strings.ToLower(strings.TrimSpace(tt.in)) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	for _, bad := range []string{"", "recaptcha", "altcha", "turnstile,pow"} {
		_, err := challenge.ParseKind(bad)
		if err == nil || !strings.Contains(err.Error(), "want none, turnstile, hcaptcha or pow") {
			t.Errorf("ParseKind(%q) error = %v, want one naming the kinds", bad, err)
		}
	}
	var k challenge.Kind
	if err := k.UnmarshalText([]byte("pow")); err != nil || k != challenge.KindPoW {
		t.Errorf("UnmarshalText(pow) = %v, %v", k, err)
	}
}

func TestTokenLifetimes(t *testing.T) {
	if got := challenge.KindTurnstile.TokenLifetime().Seconds(); got != 300 {
		t.Errorf("Turnstile token lifetime = %vs, want 300s", got)
	}
	if got := challenge.KindHCaptcha.TokenLifetime().Seconds(); got != 120 {
		t.Errorf("hCaptcha token lifetime = %vs, want 120s", got)
	}
	if got := challenge.KindPoW.TokenLifetime(); got != 0 {
		t.Errorf("PoW token lifetime = %v, want 0 (the payload carries its expiry)", got)
	}
}

func TestResult(t *testing.T) {
	tests := []struct {
		r         challenge.Result
		str       string
		retryable bool
	}{
		{challenge.Result{Verdict: challenge.Passed}, "passed", false},
		{challenge.Result{Verdict: challenge.Failed, Reason: challenge.ReasonHostname}, "failed(hostname)", false},
		{challenge.Result{Verdict: challenge.Unverified, Reason: challenge.ReasonTimeout}, "unverified(timeout)", true},
		{challenge.Result{Verdict: challenge.Unverified, Reason: challenge.ReasonStoreFull}, "unverified(store-full)", true},
		{challenge.Result{Verdict: challenge.Unverified, Reason: challenge.ReasonConfig}, "unverified(config)", false},
		{challenge.Result{Verdict: challenge.Replayed}, "replayed", false},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.str {
			t.Errorf("String() = %q, want %q", got, tt.str)
		}
		if got := tt.r.Retryable(); got != tt.retryable {
			t.Errorf("%s: Retryable() = %v, want %v", tt.str, got, tt.retryable)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const secret = "0x4AAAAAAA-very-secret"
	cfg := challenge.TurnstileConfig{Secret: secret, Hostnames: []string{"site.example"}}
	v, err := challenge.NewTurnstile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := challenge.NewHCaptcha(challenge.HCaptchaConfig{Secret: secret, Hostnames: []string{"site.example"}})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("configured", "config", cfg, "verifier", v, "hcaptcha", h, "secret", cfg.Secret)
	for _, out := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprint(h), logged.String(),
	} {
		if strings.Contains(out, secret) || strings.Contains(out, "very-secret") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(v), "site.example") {
		t.Errorf("verifier prints as %q, want its hostnames", fmt.Sprint(v))
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-([45])[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestIdempotencyKeys(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k := challenge.NewIdempotencyKey()
		if m := uuidRE.FindStringSubmatch(k); m == nil || m[1] != "4" {
			t.Fatalf("NewIdempotencyKey() = %q, want a version 4 UUID", k)
		}
		if seen[k] {
			t.Fatalf("NewIdempotencyKey() repeated %q", k)
		}
		seen[k] = true
	}
	a := challenge.IdempotencyKeyFor("site.example", "client-key-1")
	if m := uuidRE.FindStringSubmatch(a); m == nil || m[1] != "5" {
		t.Fatalf("IdempotencyKeyFor = %q, want a version 5 UUID", a)
	}
	if b := challenge.IdempotencyKeyFor("site.example", "client-key-1"); b != a {
		t.Errorf("IdempotencyKeyFor is not stable: %q then %q", a, b)
	}
	for _, other := range [][2]string{{"site.example", "client-key-2"}, {"other.example", "client-key-1"}, {"site.exampleclient-key-1", ""}} {
		if b := challenge.IdempotencyKeyFor(other[0], other[1]); b == a {
			t.Errorf("IdempotencyKeyFor(%q, %q) = %q, same as for another sign-up", other[0], other[1], b)
		}
	}
}
