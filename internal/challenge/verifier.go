package challenge

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"log/slog"
	"time"
)

// Verifier checks the token (or proof-of-work payload) a sign-up carries.
// Turnstile, HCaptcha and PoW implement it; a property of KindNone has no
// verifier.
//
// Verify never returns an error: whatever goes wrong ends in a Result,
// and anything that is not the visitor's fault is Unverified, so that the
// edge keeps the sign-up.
type Verifier interface {
	Kind() Kind
	Verify(ctx context.Context, token string, expect Expect) Result
}

var (
	_ Verifier = (*Turnstile)(nil)
	_ Verifier = (*HCaptcha)(nil)
	_ Verifier = (*PoW)(nil)
)

// Expect is what one sign-up brings to its check. What a property
// expects of every token (secret, hostnames, action) is the verifier's
// configuration instead.
type Expect struct {
	// Property is the property the sign-up is for. A proof-of-work
	// challenge issued for another property is refused.
	Property string
	// IdempotencyKey identifies the sign-up at Turnstile (a UUID, from
	// NewIdempotencyKey or IdempotencyKeyFor). A re-check of the same
	// sign-up must reuse it. Empty sends none; hCaptcha and PoW ignore it.
	IdempotencyKey string
	// Now is the time of the check (proof of work's expiry); zero means
	// time.Now().
	Now time.Time
}

func (e Expect) now() time.Time {
	if e.Now.IsZero() {
		return time.Now()
	}
	return e.Now
}

// Recheck verifies a token again for a sign-up that was stored
// unverified at received. expect must be the first check's, with the same
// IdempotencyKey: Turnstile then answers a repeat for an already
// consumed token with its first answer. Past the kind's TokenLifetime
// the provider would refuse the token anyway, so Recheck answers
// Failed(expired) without asking.
func Recheck(ctx context.Context, v Verifier, token string, expect Expect, received time.Time) Result {
	if life := v.Kind().TokenLifetime(); life > 0 && expect.now().Sub(received) >= life {
		return failed(ReasonExpired)
	}
	return v.Verify(ctx, token, expect)
}

// NewIdempotencyKey returns a random (version 4) UUID for Turnstile's
// idempotency_key: one per sign-up, kept with it for re-checks.
func NewIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// idempotencyNamespace is the UUID namespace of IdempotencyKeyFor (a
// random UUID, fixed forever: changing it would change every key).
var idempotencyNamespace = [16]byte{0x4c, 0x1e, 0x7a, 0x0b, 0x93, 0x52, 0x4d, 0x6e, 0xa1, 0x3f, 0x0c, 0x88, 0x5b, 0x27, 0xd4, 0x19}

// IdempotencyKeyFor returns a name-based (version 5) UUID for a sign-up
// that already has a key of its own, such as the client's Idempotency-Key
// header: a client's retry of the same sign-up then reaches Turnstile with
// the same idempotency_key and gets the first answer again instead of
// timeout-or-duplicate.
func IdempotencyKeyFor(property, clientKey string) string {
	h := sha1.New()
	h.Write(idempotencyNamespace[:])
	h.Write([]byte(property))
	h.Write([]byte{0})
	h.Write([]byte(clientKey))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// isUUID reports whether s is a UUID in its canonical text form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Secret is a provider's secret key. It prints and logs as "[redacted]",
// so a configuration struct that holds one can be logged whole.
type Secret string

const redacted = "[redacted]"

// String hides the secret.
func (Secret) String() string { return redacted }

// GoString hides the secret from %#v.
func (Secret) GoString() string { return redacted }

// LogValue hides the secret from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText hides the secret from encoders.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
