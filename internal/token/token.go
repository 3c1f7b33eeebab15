// Package token mints and verifies the links mailslot puts in emails:
// confirm (double opt-in), unsubscribe and self-service erasure.
//
// A token is "<key id>.<sealed>", base64url without padding. The sealed
// part is a version byte (2), then the claims encrypted and authenticated
// with AES-256-GCM under a key derived (HKDF-SHA256) from the secret the
// key id names; the key id and version are authenticated with them. The
// claims name the purpose, the property, the issue and expiry times and the
// email's HMAC — never the address itself, because links end up in mail
// logs and proxies — and nobody without the key can read them: the email
// HMAC is the same for one person on every property, so in the clear it
// would let anyone holding two properties' links tell that they reach the
// same person.
//
// Keys rotate by adding a new first key to MAILSLOT_TOKEN_KEY and keeping
// the old ones after it: new links use the first key, old links keep
// verifying until their key is removed.
//
// Tokens of the first format, "<key id>.<payload>.<mac>" (the claims as
// base64url JSON, in the clear, signed with HMAC-SHA256 over
// "mailslot-token-v1.<key id>.<payload>"), were handed out for up to a year
// before this one; they still verify, through the same checks, so that the
// unsubscribe links in mail already sent keep working. They carry no issue
// time (IssuedAt is zero), and nothing mints them any more: once every link
// of that format has expired (a year after the change), the format can be
// dropped.
package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Purposes a token can be minted for. A token for one is refused for
// another.
const (
	Confirm     = "confirm"
	Unsubscribe = "unsubscribe"
	Erase       = "erase"
)

// Errors Verify returns. They are safe to show to the person holding the
// link.
var (
	ErrMalformed    = errors.New("the link is incomplete or damaged")
	ErrUnknownKey   = errors.New("the link was signed with a key that is no longer valid")
	ErrBadSignature = errors.New("the link has been altered")
	ErrWrongPurpose = errors.New("the link is for something else")
	ErrExpired      = errors.New("the link has expired")
)

// Claims is what a token says.
type Claims struct {
	Purpose   string `json:"p"`
	Property  string `json:"prop,omitempty"`
	EmailHMAC []byte `json:"h"`
	// IssuedAt is when the token was minted, to the microsecond, so that
	// a link minted before a later withdrawal or erasure can be told from
	// one minted after it. Sign stamps the current time when it is zero.
	// Tokens of the first format carry none: Verify returns the zero time
	// for them, which is before everything.
	IssuedAt time.Time `json:"-"`
	// Expires is when the token stops verifying, to the second.
	Expires time.Time `json:"-"`
	// ExpUnix is Expires in Unix seconds, as the first format's JSON
	// carried it. Sign ignores it; Verify sets it.
	ExpUnix int64 `json:"exp"`
}

type key struct {
	id     string
	secret []byte
	aead   cipher.AEAD
}

// Keys holds the signing key (first) and the keys that still verify.
type Keys struct {
	keys []key
}

// ParseKeys reads "id:secret,id:secret,…"; a bare secret gets the id "k1".
// Ids are short letters and digits; secrets must be at least 16 bytes.
func ParseKeys(s string) (*Keys, error) {
	var ks Keys
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		if !ok {
			id, secret = "k1", part
		}
		if id == "" || len(id) > 16 || strings.ContainsAny(id, ".=/+ ") {
			return nil, fmt.Errorf("token key id %q: use up to 16 letters and digits", id)
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("token key %q: secret is shorter than 16 bytes", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("token key id %q appears twice", id)
		}
		seen[id] = true
		aead, err := sealer([]byte(secret), id)
		if err != nil {
			return nil, fmt.Errorf("token key %q: derive the encryption key: %w", id, err)
		}
		ks.keys = append(ks.keys, key{id: id, secret: []byte(secret), aead: aead})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no token key configured")
	}
	return &ks, nil
}

// sealer derives the key id's AEAD. The key id is part of the derivation,
// so one secret configured under two ids gives two unrelated keys.
func sealer(secret []byte, id string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, "mailslot/token/v2/aes-256-gcm/"+id, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	// A random 96-bit nonce per token: the key sees far fewer than the
	// 2^32 messages after which random GCM nonces risk repeating.
	return cipher.NewGCMWithRandomNonce(block)
}

// b64 decodes strictly, so that one token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// version2 is the first byte of a sealed token.
const version2 = 2

// maxToken bounds what Verify reads: the longest property and purpose fit
// well inside it.
const maxToken = 1024

// Sign mints a token for c with the first key. A zero IssuedAt is stamped
// with the current time.
func (ks *Keys) Sign(c Claims) string {
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	k := ks.keys[0]
	sealed := k.aead.Seal([]byte{version2}, nil, encodeClaims(c), additional(k.id))
	return k.id + "." + b64.EncodeToString(sealed)
}

// additional is the authenticated data of a sealed token: its format and
// key id, so that neither can be swapped.
func additional(id string) []byte {
	return []byte("mailslot-token-v2." + id)
}

// encodeClaims lays the claims out compactly, to keep links short: purpose,
// property and email HMAC length-prefixed, issue time in Unix
// microseconds and expiry in Unix seconds as varints.
func encodeClaims(c Claims) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+len(c.Purpose)+len(c.Property)+len(c.EmailHMAC)+2*binary.MaxVarintLen64)
	b = appendBytes(b, c.Purpose)
	b = appendBytes(b, c.Property)
	b = appendBytes(b, string(c.EmailHMAC))
	b = binary.AppendVarint(b, c.IssuedAt.UnixMicro())
	b = binary.AppendVarint(b, c.Expires.Unix())
	return b
}

func appendBytes(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func decodeClaims(b []byte) (Claims, bool) {
	var c Claims
	var h string
	var ok bool
	if c.Purpose, b, ok = readBytes(b); !ok {
		return Claims{}, false
	}
	if c.Property, b, ok = readBytes(b); !ok {
		return Claims{}, false
	}
	if h, b, ok = readBytes(b); !ok {
		return Claims{}, false
	}
	iat, n := binary.Varint(b)
	if n <= 0 {
		return Claims{}, false
	}
	exp, m := binary.Varint(b[n:])
	if m <= 0 || n+m != len(b) {
		return Claims{}, false
	}
	c.EmailHMAC = []byte(h)
	c.IssuedAt = time.UnixMicro(iat).UTC()
	c.ExpUnix = exp
	return c, true
}

func readBytes(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// Verify checks a token's key, integrity, purpose and expiry, in that
// order, and returns its claims. Tokens of both formats go through the
// same checks.
func (ks *Keys) Verify(tok, purpose string, now time.Time) (Claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) < 2 || len(parts) > 3 || len(tok) > maxToken {
		return Claims{}, ErrMalformed
	}
	var k *key
	for i := range ks.keys {
		if ks.keys[i].id == parts[0] {
			k = &ks.keys[i]
		}
	}
	if k == nil {
		return Claims{}, ErrUnknownKey
	}
	var c Claims
	var err error
	if len(parts) == 2 {
		c, err = open(*k, parts[1])
	} else {
		c, err = openV1(*k, parts[1], parts[2])
	}
	if err != nil {
		return Claims{}, err
	}
	if len(c.EmailHMAC) != sha256.Size {
		return Claims{}, ErrMalformed
	}
	if c.Purpose != purpose {
		return Claims{}, ErrWrongPurpose
	}
	c.Expires = time.Unix(c.ExpUnix, 0).UTC()
	if !now.Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// open decrypts a sealed token.
func open(k key, sealed string) (Claims, error) {
	b, err := b64.DecodeString(sealed)
	if err != nil || len(b) < 1 || b[0] != version2 {
		return Claims{}, ErrMalformed
	}
	plain, err := k.aead.Open(nil, nil, b[1:], additional(k.id))
	if err != nil {
		return Claims{}, ErrBadSignature
	}
	c, ok := decodeClaims(plain)
	if !ok {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

// openV1 checks a token of the first format.
func openV1(k key, payload, sig string) (Claims, error) {
	mac, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, macV1(k, payload)) {
		return Claims{}, ErrBadSignature
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

func macV1(k key, payload string) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("mailslot-token-v1." + k.id + "." + payload))
	return m.Sum(nil)
}
