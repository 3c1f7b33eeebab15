// Package pii keeps personal data out of places it must not reach: it
// normalizes email addresses so that one person has one identity, and turns
// emails and IP addresses into keyed hashes (HMAC-SHA256) that can be
// matched but not reversed.
//
// The same pepper must be configured on every edge and in the operator CLI:
// erasure tombstones and suppression entries are matched by these hashes
// across the fleet.
package pii

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// MaxEmailLen is the longest address accepted (RFC 5321's path limit).
const MaxEmailLen = 254

// ErrInvalidEmail is returned for anything that is not a plain address.
var ErrInvalidEmail = errors.New("invalid email address")

// NormalizeEmail trims and lowercases an address and checks that it is a
// single plain addr-spec with a dotted domain. Display names ("Ann <a@b>"),
// lists and comments are refused rather than guessed at.
func NormalizeEmail(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrInvalidEmail
	}
	// Lowercase before checking: some letters grow when lowercased (Ⱥ is
	// two bytes, ⱥ three), and the limits hold for what is stored, so that
	// a stored address always normalizes to itself.
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > MaxEmailLen {
		return "", ErrInvalidEmail
	}
	if strings.ContainsAny(s, " <>,;\"()[]\\\t\r\n") {
		return "", ErrInvalidEmail
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", ErrInvalidEmail
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if local == "" || len(local) > 64 || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", ErrInvalidEmail
	}
	return s, nil
}

// Hasher computes the keyed hashes. Separate sub-keys are derived from the
// one pepper so that an email hash can never be compared with an IP hash.
type Hasher struct {
	emailKey []byte
	ipKey    []byte
}

// NewHasher derives the hashing keys from pepper.
func NewHasher(pepper []byte) *Hasher {
	return &Hasher{
		emailKey: derive(pepper, "mailslot/email/v1"),
		ipKey:    derive(pepper, "mailslot/ip/v1"),
	}
}

func derive(pepper []byte, label string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Email hashes a normalized email address.
func (h *Hasher) Email(normalized string) []byte {
	return sum(h.emailKey, normalized)
}

// IP hashes a client IP address in its canonical text form.
func (h *Hasher) IP(ip string) []byte {
	return sum(h.ipKey, ip)
}

func sum(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}
