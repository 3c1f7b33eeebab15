package config

import (
	"strings"
	"time"
)

// Challenge configures bot challenges (internal/challenge). Which
// challenge each property uses lives in Postgres
// (mailslot.property_challenges, `mailslotctl challenge set`); this is the
// fleet's part: the default for properties without a row, the
// proof-of-work key every edge shares, and timings.
type Challenge struct {
	// Default is none or pow (MAILSLOT_CHALLENGE): the challenge of
	// properties without a row. Turnstile and hCaptcha need a secret per
	// property, so they are set per property only.
	Default string
	// DefaultNoJS is hold or refuse (MAILSLOT_CHALLENGE_NO_JS): what a
	// form without a token gets on a property with the default challenge.
	DefaultNoJS string
	// Key signs proof-of-work challenges (MAILSLOT_CHALLENGE_KEY); every
	// edge needs the same one. Empty derives one from MAILSLOT_TOKEN_KEY,
	// which every edge shares already.
	Key string
	// MaxNumber is the proof of work's cost (MAILSLOT_CHALLENGE_POW_MAX);
	// 0 means the package default.
	MaxNumber int
	// Lifetime is how long an issued challenge can be solved and sent
	// (MAILSLOT_CHALLENGE_POW_LIFETIME).
	Lifetime time.Duration
	// Timeout bounds one siteverify call (MAILSLOT_CHALLENGE_TIMEOUT).
	Timeout time.Duration
	// PullInterval is how often the edge pulls the per-property settings
	// (MAILSLOT_CHALLENGE_PULL_INTERVAL).
	PullInterval time.Duration
	// TurnstileURL and HCaptchaURL replace the providers' siteverify
	// endpoints (MAILSLOT_CHALLENGE_TURNSTILE_URL, _HCAPTCHA_URL): for
	// tests and development only.
	TurnstileURL, HCaptchaURL string
	// RecheckQueue bounds the unverified sign-ups waiting for a re-check
	// (MAILSLOT_CHALLENGE_RECHECK_QUEUE).
	RecheckQueue int
}

// challenge reads the MAILSLOT_CHALLENGE* variables.
func (p *parser) challenge(env string) Challenge {
	c := Challenge{
		Default:      strings.ToLower(p.str("MAILSLOT_CHALLENGE", "none")),
		DefaultNoJS:  strings.ToLower(p.str("MAILSLOT_CHALLENGE_NO_JS", "hold")),
		Key:          strings.TrimSpace(p.getenv("MAILSLOT_CHALLENGE_KEY")),
		MaxNumber:    p.int("MAILSLOT_CHALLENGE_POW_MAX", 0),
		Lifetime:     p.duration("MAILSLOT_CHALLENGE_POW_LIFETIME", 10*time.Minute),
		Timeout:      p.duration("MAILSLOT_CHALLENGE_TIMEOUT", 3*time.Second),
		PullInterval: p.duration("MAILSLOT_CHALLENGE_PULL_INTERVAL", 30*time.Second),
		TurnstileURL: p.str("MAILSLOT_CHALLENGE_TURNSTILE_URL", ""),
		HCaptchaURL:  p.str("MAILSLOT_CHALLENGE_HCAPTCHA_URL", ""),
		RecheckQueue: p.int("MAILSLOT_CHALLENGE_RECHECK_QUEUE", 1024),
	}
	if c.Default != "none" && c.Default != "pow" {
		p.fail("MAILSLOT_CHALLENGE", "must be none or pow (Turnstile and hCaptcha are set per property: mailslotctl challenge set)")
	}
	if c.DefaultNoJS != "hold" && c.DefaultNoJS != "refuse" {
		p.fail("MAILSLOT_CHALLENGE_NO_JS", "must be hold or refuse")
	}
	if c.Key != "" && len(c.Key) < 16 {
		p.fail("MAILSLOT_CHALLENGE_KEY", "must be at least 16 characters")
	}
	if env == Production && c.Default == "pow" && c.Key != "" && len(c.Key) < minSecretLen {
		p.fail("MAILSLOT_CHALLENGE_KEY", "must be at least 32 characters in production")
	}
	if c.MaxNumber < 0 || c.MaxNumber > 100_000_000 {
		p.fail("MAILSLOT_CHALLENGE_POW_MAX", "must be between 1 and 100000000 (0: the default)")
	}
	if c.Lifetime < time.Minute || c.Lifetime > 24*time.Hour {
		p.fail("MAILSLOT_CHALLENGE_POW_LIFETIME", "must be between 1m and 24h")
	}
	if c.Timeout <= 0 || c.Timeout > 30*time.Second {
		p.fail("MAILSLOT_CHALLENGE_TIMEOUT", "must be between 1ms and 30s")
	}
	if c.PullInterval < time.Second {
		p.fail("MAILSLOT_CHALLENGE_PULL_INTERVAL", "must be at least 1s")
	}
	if env == Production && (c.TurnstileURL != "" || c.HCaptchaURL != "") {
		p.fail("MAILSLOT_CHALLENGE_TURNSTILE_URL", "siteverify endpoints can only be replaced in development")
	}
	if c.RecheckQueue < 1 || c.RecheckQueue > 100_000 {
		p.fail("MAILSLOT_CHALLENGE_RECHECK_QUEUE", "must be between 1 and 100000")
	}
	return c
}
