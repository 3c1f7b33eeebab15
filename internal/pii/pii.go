// Package pii keeps personal data out of places it must not reach: it
// normalizes email addresses so that one person has one identity, finds
// addresses hidden inside other text, and turns emails and IP addresses into
// keyed hashes (HMAC-SHA256) that can be matched but not reversed.
//
// The same pepper must be configured on every edge and in the operator CLI:
// erasure tombstones and suppression entries are matched by these hashes
// across the fleet.
package pii

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/mail"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// MaxEmailLen is the longest address accepted (RFC 5321's path limit),
// counted in bytes of the normalized form, whose domain is ASCII.
const MaxEmailLen = 254

// maxEmailInput bounds the input NormalizeEmail works on before it has
// normalized anything: a Unicode domain may be longer in UTF-8 than in its
// ASCII form, but not four times longer.
const maxEmailInput = 4 * MaxEmailLen

// Errors NormalizeEmail returns. Every one of them wraps ErrInvalidEmail, so
// callers that only need "not an address" test for that one; none of them
// quotes the input.
var (
	// ErrInvalidEmail is returned for anything that is not a plain address.
	ErrInvalidEmail = errors.New("invalid email address")
	// ErrEmailEncoding is returned for input that is not valid UTF-8, or
	// that holds U+FFFD, the mark of a character lost to a bad encoding.
	ErrEmailEncoding = fmt.Errorf("%w: not valid UTF-8", ErrInvalidEmail)
	// ErrEmailControl is returned for a control character (U+0000–U+001F,
	// U+007F–U+009F) anywhere inside the address.
	ErrEmailControl = fmt.Errorf("%w: control character", ErrInvalidEmail)
	// ErrEmailInvisible is returned for a character that renders as
	// nothing or reorders what is around it: format characters (category
	// Cf: zero-width spaces and joiners, bidi controls, the byte-order mark,
	// the soft hyphen), other default-ignorable code points and variation
	// selectors, non-ASCII spaces and separators, and private-use
	// characters. Such an address looks like another one and would hash to
	// a different identity.
	ErrEmailInvisible = fmt.Errorf("%w: invisible or formatting character", ErrInvalidEmail)
	// ErrEmailDomain is returned when the domain is not a valid
	// internationalized domain name (IDNA 2008 with UTS #46 lookup rules).
	ErrEmailDomain = fmt.Errorf("%w: invalid domain", ErrInvalidEmail)
)

// NormalizeEmail returns the one form under which an address is stored and
// hashed, so that every way of writing the same mailbox is the same
// identity and an erasure reaches all of them:
//
//   - surrounding white space is trimmed;
//   - the whole address is in Unicode Normalization Form C and lower case
//     (precomposed "é" and "e" + U+0301 are one address);
//   - the domain is in its ASCII (A-label, "xn--…") form, through IDNA's
//     lookup profile, so "bücher.example", "BÜCHER.example" and
//     "xn--bcher-kva.example" are one domain;
//
// and checks that it is a single plain addr-spec with a dotted domain whose
// top-level label has two characters or more and is not all digits.
// Display names ("Ann <a@b>"), lists, comments, quoted local parts and domain
// literals are refused rather than guessed at; invalid UTF-8, control
// characters and invisible characters are refused rather than dropped,
// because dropping them would let two different inputs name one identity
// while looking like a third. NormalizeEmail is idempotent: a normalized
// address normalizes to itself.
func NormalizeEmail(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrEmailEncoding
	}
	if len(s) > maxEmailInput {
		return "", ErrInvalidEmail
	}
	s = strings.TrimSpace(s)
	for _, r := range s {
		if err := checkRune(r); err != nil {
			return "", err
		}
	}
	// Lowercase between two NFC passes: composing first gives ToLower
	// whole letters, and a lowercase letter may itself compose with a
	// following mark. Limits hold for what is stored, so that a stored
	// address always normalizes to itself (some letters grow when
	// lowercased: Ⱥ is two bytes, ⱥ three).
	s = norm.NFC.String(strings.ToLower(norm.NFC.String(s)))
	if s == "" {
		return "", ErrInvalidEmail
	}
	if strings.ContainsAny(s, " <>,;\"()[]\\") {
		return "", ErrInvalidEmail
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", ErrInvalidEmail
	}
	local, domain := s[:at], s[at+1:]
	domain, err := asciiDomain(domain)
	if err != nil {
		return "", err
	}
	s = local + "@" + domain
	if local == "" || len(local) > 64 || len(s) > MaxEmailLen {
		return "", ErrInvalidEmail
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", ErrInvalidEmail
	}
	return s, nil
}

// checkRune refuses the characters NormalizeEmail does not store.
func checkRune(r rune) error {
	switch {
	case unicode.IsControl(r):
		return ErrEmailControl
	case r < utf8.RuneSelf:
		return nil
	case r == utf8.RuneError:
		return ErrEmailEncoding
	case unicode.In(r, unicode.Ps, unicode.Pe, unicode.Pi, unicode.Pf):
		// Brackets and quotation marks, refused like their ASCII
		// counterparts: they wrap addresses in text, and ContainsEmail
		// treats them as the edge of one.
		return ErrInvalidEmail
	case unicode.In(r, unicode.Cf, unicode.Co, unicode.Z,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.Noncharacter_Code_Point):
		return ErrEmailInvisible
	}
	return nil
}

// asciiDomain turns a domain into its canonical ASCII form. Going through
// Unicode and back makes one form of every spelling: an A-label that
// decodes to plain ASCII or to an unnormalized label comes back as what
// the Unicode form encodes to.
func asciiDomain(d string) (string, error) {
	u, err := idna.Lookup.ToUnicode(d)
	if err != nil {
		return "", ErrEmailDomain
	}
	a, err := idna.Lookup.ToASCII(u)
	if err != nil {
		return "", ErrEmailDomain
	}
	a = strings.ToLower(a)
	if len(a) > 253 || !strings.Contains(a, ".") || strings.HasPrefix(a, ".") || strings.HasSuffix(a, ".") {
		return "", ErrEmailDomain
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" || len(label) > 63 {
			return "", ErrEmailDomain
		}
	}
	// No top-level domain is one character or all digits (RFC 3696 §2);
	// "ann@192.0.2.1" is an address only in brackets, which are refused.
	tld := a[strings.LastIndexByte(a, '.')+1:]
	if len(tld) < 2 || strings.Trim(tld, "0123456789") == "" {
		return "", ErrEmailDomain
	}
	return a, nil
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
