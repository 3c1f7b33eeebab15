package challenge

import (
	"fmt"
	"strings"
	"time"
)

// Kind is the bot challenge a property's form uses.
type Kind uint8

// The kinds. KindNone, the zero value, means the form has no challenge.
const (
	KindNone Kind = iota
	KindTurnstile
	KindHCaptcha
	KindPoW
)

var kindNames = [...]string{
	KindNone:      "none",
	KindTurnstile: "turnstile",
	KindHCaptcha:  "hcaptcha",
	KindPoW:       "pow",
}

// Token lifetimes, from the providers' documentation: a token presented
// (or re-checked) later than this after it was issued is refused by the
// provider, so a re-check after that is pointless.
const (
	// TurnstileTokenLifetime: Turnstile tokens are valid for 300 s.
	TurnstileTokenLifetime = 300 * time.Second
	// HCaptchaTokenLifetime: hCaptcha tokens expire after about 120 s.
	HCaptchaTokenLifetime = 120 * time.Second
)

// String returns none, turnstile, hcaptcha or pow.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind reads a kind's name (case and surrounding space ignored).
func ParseKind(s string) (Kind, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for i, name := range kindNames {
		if t == name {
			return Kind(i), nil
		}
	}
	return KindNone, fmt.Errorf("parse challenge kind %q: want none, turnstile, hcaptcha or pow", s)
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) {
		return nil, fmt.Errorf("marshal challenge kind: unknown kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText reads a kind's name, so that configuration can hold one.
func (k *Kind) UnmarshalText(b []byte) error {
	p, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// TokenLifetime is how long a token of this kind stays verifiable after
// it was issued: the window for a re-check. It is zero for KindNone and
// KindPoW (a proof-of-work payload carries its own expiry, which Verify
// checks).
func (k Kind) TokenLifetime() time.Duration {
	switch k {
	case KindTurnstile:
		return TurnstileTokenLifetime
	case KindHCaptcha:
		return HCaptchaTokenLifetime
	}
	return 0
}
