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
	"hash"
	"io"
	"net/mail"
	"strings"
	"sync"
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
	email keyedHash
	ip    keyedHash
}

// NewHasher derives the hashing keys from pepper.
func NewHasher(pepper []byte) *Hasher {
	return &Hasher{
		email: newKeyedHash(derive(pepper, "mailslot/email/v1")),
		ip:    newKeyedHash(derive(pepper, "mailslot/ip/v1")),
	}
}

func derive(pepper []byte, label string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Email hashes a normalized email address.
func (h *Hasher) Email(normalized string) []byte {
	return h.email.sum(normalized)
}

// IP hashes a client IP address in its canonical text form.
func (h *Hasher) IP(ip string) []byte {
	return h.ip.sum(ip)
}

// keyedHash is HMAC-SHA256 under one key. Every sign-up takes two, and
// keying an HMAC costs more than hashing an address, so keyed hashers are
// reused: Reset returns an HMAC to its keyed initial state.
type keyedHash struct {
	pool sync.Pool
}

func newKeyedHash(key []byte) keyedHash {
	return keyedHash{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

func (k *keyedHash) sum(s string) []byte {
	m := k.pool.Get().(hash.Hash)
	_, _ = io.WriteString(m, s)
	out := m.Sum(make([]byte, 0, sha256.Size))
	m.Reset()
	k.pool.Put(m)
	return out
}
