// Package stdwebhook signs and verifies webhooks the Standard Webhooks way
// (https://www.standardwebhooks.com): a delivery carries webhook-id,
// webhook-timestamp (Unix seconds) and webhook-signature, which holds one
// or more space-separated "v1,<base64>" entries, each an HMAC-SHA256 over
// "<id>.<timestamp>.<raw body>" with a secret's key. Secrets are written
// "whsec_<base64 of the key>".
//
// Several signatures exist so that a secret can be rotated without a
// window in which the receiver refuses deliveries: while both the new and
// the old secret are live the sender signs with both, and a receiver that
// knows either one accepts.
//
// Mailslot both sends (outbound webhooks) and receives (Replicate's
// callbacks) such deliveries; this package is the one implementation of
// the scheme for both, and its tests hold it to the official JavaScript
// library.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names, in the lower case HTTP/2 sends them in; net/http
// canonicalizes them either way.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every encoded secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock. It bounds replays: a captured delivery is refused after
// this long, and one replayed sooner is a duplicate the webhook-id names.
const DefaultTolerance = 5 * time.Minute

// SecretSize is the number of random bytes in a generated secret.
const SecretSize = 32

// Limits on the headers' shape, so that a malformed or hostile request is
// refused before anything reads its body or computes an HMAC.
const (
	maxIDLen         = 256
	maxSignatureLen  = 4096
	maxSignatures    = 16
	maxTimestampLen  = 19 // every int64 fits
	minSecretKeySize = 16
	maxSecretKeySize = 128
)

// Verification errors. A receiver answers all of them alike (401), so that a
// forger learns nothing from which one it was.
var (
	ErrMissingHeaders = errors.New("webhook: signature headers missing")
	ErrMalformed      = errors.New("webhook: signature headers malformed")
	ErrTimestamp      = errors.New("webhook: timestamp outside the tolerance")
	ErrNoMatch        = errors.New("webhook: no signature matches")
	ErrNoSecrets      = errors.New("webhook: no secret to sign or verify with")
)

// Secret is one signing key. Its String and GoString methods do not show
// the key, so a Secret that reaches a log or an error says only that it is
// one; Encode gives the whsec_ form, for showing once to an operator and
// for storing.
type Secret struct {
	key []byte
}

// NewSecret generates a secret of SecretSize random bytes.
func NewSecret() (Secret, error) {
	key := make([]byte, SecretSize)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("generate webhook secret: %w", err)
	}
	return Secret{key: key}, nil
}

// ParseSecret reads a secret in its whsec_<base64> form. The errors say what
// is wrong without repeating the secret.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, errors.New("webhook secret must start with " + SecretPrefix)
	}
	if b64 == "" {
		return Secret{}, errors.New("webhook secret is empty after " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		// Some senders drop the padding; the official libraries accept it.
		key, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return Secret{}, errors.New("webhook secret is not standard base64 after " + SecretPrefix)
	}
	if len(key) < minSecretKeySize || len(key) > maxSecretKeySize {
		return Secret{}, fmt.Errorf("webhook secret key is %d bytes, want %d to %d", len(key), minSecretKeySize, maxSecretKeySize)
	}
	return Secret{key: key}, nil
}

// MustParseSecret is ParseSecret for secrets fixed in code (tests); it
// panics on a malformed one.
func MustParseSecret(s string) Secret {
	sec, err := ParseSecret(s)
	if err != nil {
		panic(err)
	}
	return sec
}

// Encode returns the secret as whsec_<base64>.
func (s Secret) Encode() string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(s.key)
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String hides the key.
func (s Secret) String() string { return SecretPrefix + "[redacted]" }

// GoString hides the key from %#v.
func (s Secret) GoString() string { return s.String() }

// Equal reports whether two secrets hold the same key, in constant time.
func (s Secret) Equal(o Secret) bool { return hmac.Equal(s.key, o.key) }

func (s Secret) mac(id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Timestamp formats t as the webhook-timestamp header: Unix seconds.
func Timestamp(t time.Time) string {
	return strconv.FormatInt(t.Unix(), 10)
}

// Sign returns the webhook-signature value for a message: one
// "v1,<base64>" entry per secret, in the order given, space separated. A
// sender rotating its secret passes the new one and the old one.
// It returns "" when secrets holds no usable secret.
func Sign(secrets []Secret, msgID string, ts time.Time, body []byte) string {
	stamp := Timestamp(ts)
	var b strings.Builder
	for _, s := range secrets {
		if s.IsZero() {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(s.mac(msgID, stamp, body)))
	}
	return b.String()
}

// CheckHeaders validates the three headers' shape and the timestamp
// against now without the body, so that a receiver refuses a malformed,
// stale or unsigned request cheaply, before it reads the body. A zero
// tolerance means DefaultTolerance. Verify calls it too.
func CheckHeaders(id, timestamp, signature string, now time.Time, tolerance time.Duration) error {
	if id == "" || timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	if len(id) > maxIDLen || !printable(id) {
		return fmt.Errorf("%w: webhook-id", ErrMalformed)
	}
	if len(timestamp) > maxTimestampLen || !digits(timestamp) {
		return fmt.Errorf("%w: webhook-timestamp", ErrMalformed)
	}
	if len(signature) > maxSignatureLen {
		return fmt.Errorf("%w: webhook-signature too long", ErrMalformed)
	}
	n, v1 := 0, 0
	for entry := range strings.FieldsSeq(signature) {
		n++
		if n > maxSignatures {
			return fmt.Errorf("%w: webhook-signature has more than %d entries", ErrMalformed, maxSignatures)
		}
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version == "" || sig == "" {
			return fmt.Errorf("%w: webhook-signature entry", ErrMalformed)
		}
		if version == "v1" {
			v1++
		}
	}
	if v1 == 0 {
		return fmt.Errorf("%w: webhook-signature has no v1 entry", ErrMalformed)
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp", ErrMalformed)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	tol := int64(tolerance / time.Second)
	if d := now.Unix() - secs; d > tol || d < -tol {
		return ErrTimestamp
	}
	return nil
}

// Verify checks a delivery: the headers' shape and timestamp (CheckHeaders)
// and that one v1 signature is the HMAC of id, timestamp and the raw body
// with one of secrets. Comparisons are constant-time. The body must be the
// bytes exactly as received, before any parsing.
func Verify(secrets []Secret, id, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	if err := CheckHeaders(id, timestamp, signature, now, tolerance); err != nil {
		return err
	}
	var wants [][]byte
	for _, s := range secrets {
		if !s.IsZero() {
			wants = append(wants, s.mac(id, timestamp, body))
		}
	}
	if len(wants) == 0 {
		return ErrNoSecrets
	}
	matched := false
	for entry := range strings.FieldsSeq(signature) {
		version, b64, _ := strings.Cut(entry, ",")
		if version != "v1" {
			continue // another scheme (v1a, ed25519): not ours to check
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, want := range wants {
			// Every pair is compared, so the time taken does not say which
			// secret or entry matched.
			if hmac.Equal(got, want) {
				matched = true
			}
		}
	}
	if !matched {
		return ErrNoMatch
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
