// Package token signs and verifies the links mailslot puts in emails:
// confirm (double opt-in), unsubscribe and self-service erasure.
//
// A token is "<key id>.<payload>.<mac>", base64url without padding, where
// the MAC is HMAC-SHA256 over "mailslot-token-v1.<key id>.<payload>" with
// the key the id names. Keys rotate by adding a new first key to
// MAILSLOT_TOKEN_KEY and keeping the old ones after it: new links use the
// first key, old links keep verifying until their key is removed.
//
// The payload names the purpose, the property and the email's HMAC — never
// the address itself, because links end up in mail logs and proxies.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
	Purpose   string    `json:"p"`
	Property  string    `json:"prop,omitempty"`
	EmailHMAC []byte    `json:"h"`
	Expires   time.Time `json:"-"`
	ExpUnix   int64     `json:"exp"`
}

type key struct {
	id     string
	secret []byte
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
		ks.keys = append(ks.keys, key{id: id, secret: []byte(secret)})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no token key configured")
	}
	return &ks, nil
}

var b64 = base64.RawURLEncoding

// Sign mints a token for c with the first key.
func (ks *Keys) Sign(c Claims) string {
	c.ExpUnix = c.Expires.Unix()
	body, _ := json.Marshal(c)
	k := ks.keys[0]
	payload := b64.EncodeToString(body)
	return k.id + "." + payload + "." + b64.EncodeToString(mac(k, payload))
}

// Verify checks a token's key, signature, purpose and expiry, in that order.
func (ks *Keys) Verify(tok, purpose string, now time.Time) (Claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(tok) > 1024 {
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
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac(*k, parts[1])) {
		return Claims{}, ErrBadSignature
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || len(c.EmailHMAC) != sha256.Size {
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

func mac(k key, payload string) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("mailslot-token-v1." + k.id + "." + payload))
	return m.Sum(nil)
}
