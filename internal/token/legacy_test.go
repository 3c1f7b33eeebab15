package token_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/token"
)

// Tokens of the first format, as the previous release minted them with
// oldKey for ann@example.com's SHA-256 on site.example (the last one without
// a property), expiring 2026-06-30 12:00 UTC. Links like these are in mail
// already sent, and must keep working until they expire.
var legacyTokens = map[string]string{
	token.Confirm:     "old.eyJwIjoiY29uZmlybSIsInByb3AiOiJzaXRlLmV4YW1wbGUiLCJoIjoiY2RUMVgzTDZFbzM3Um9vYU9RRlFmSUJMZERGa2lIUk5kcDEvU3hacFpIWT0iLCJleHAiOjE3ODI4MjA4MDB9.kQU5jAlb7GFVDTk3XtInf5IlXYhHUi96RI3MC0cGypA",
	token.Unsubscribe: "old.eyJwIjoidW5zdWJzY3JpYmUiLCJwcm9wIjoic2l0ZS5leGFtcGxlIiwiaCI6ImNkVDFYM0w2RW8zN1Jvb2FPUUZRZklCTGRERmtpSFJOZHAxL1N4WnBaSFk9IiwiZXhwIjoxNzgyODIwODAwfQ.2BkzOJtPuQa44bhjpxwRufnJBgVMoyT8ATrjvqR1wuY",
	token.Erase:       "old.eyJwIjoiZXJhc2UiLCJwcm9wIjoic2l0ZS5leGFtcGxlIiwiaCI6ImNkVDFYM0w2RW8zN1Jvb2FPUUZRZklCTGRERmtpSFJOZHAxL1N4WnBaSFk9IiwiZXhwIjoxNzgyODIwODAwfQ.P2YJBe1QrXK_qWdtemkXAGhzf_NAT6r0Pr_FsyaVHyY",
}

const legacyNoProperty = "old.eyJwIjoidW5zdWJzY3JpYmUiLCJoIjoiY2RUMVgzTDZFbzM3Um9vYU9RRlFmSUJMZERGa2lIUk5kcDEvU3hacFpIWT0iLCJleHAiOjE3ODI4MjA4MDB9.Z9bcIaIX_WWzm9IgjmSRfPbifaGfhBWeMAQfX1qclcs"

var legacyExpiry = time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)

// signV1 mints a token of the first format, as documented in the package:
// base64url JSON claims and an HMAC-SHA256 over
// "mailslot-token-v1.<key id>.<payload>".
func signV1(id, secret string, c token.Claims) string {
	c.ExpUnix = c.Expires.Unix()
	body, _ := json.Marshal(c)
	payload := base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("mailslot-token-v1." + id + "." + payload))
	return id + "." + payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestLegacyTokensVerify(t *testing.T) {
	ks := keys(t, newKey+","+oldKey) // rotated since: the old key verifies only
	h := sha256.Sum256([]byte("ann@example.com"))
	for purpose, tok := range legacyTokens {
		c, err := ks.Verify(tok, purpose, now)
		if err != nil {
			t.Fatalf("%s link of the first format: %v", purpose, err)
		}
		if c.Purpose != purpose || c.Property != "site.example" || !bytes.Equal(c.EmailHMAC, h[:]) ||
			!c.Expires.Equal(legacyExpiry) || !c.IssuedAt.IsZero() {
			t.Errorf("%s link of the first format: claims %+v", purpose, c)
		}
	}
	c, err := ks.Verify(legacyNoProperty, token.Unsubscribe, now)
	if err != nil || c.Property != "" || !bytes.Equal(c.EmailHMAC, h[:]) {
		t.Errorf("link of the first format without a property: %+v, %v", c, err)
	}
	// The helper mints what the previous release minted.
	want := token.Claims{Purpose: token.Unsubscribe, EmailHMAC: h[:], Expires: legacyExpiry}
	if got := signV1("old", strings.TrimPrefix(oldKey, "old:"), want); got != legacyNoProperty {
		t.Fatalf("signV1 = %q, want the previous release's %q", got, legacyNoProperty)
	}
}

// TestLegacyTokensRefused checks that tokens of the first format go through
// every check a new token does.
func TestLegacyTokensRefused(t *testing.T) {
	ks := keys(t, oldKey)
	good := legacyTokens[token.Unsubscribe]
	b64 := base64.RawURLEncoding

	// A payload that says something else (a longer expiry), signed by
	// nobody: the MAC no longer matches.
	body, _ := b64.DecodeString(strings.Split(good, ".")[1])
	forged := bytes.Replace(body, []byte(`"exp":`), []byte(`"exp":9`), 1)
	if bytes.Equal(forged, body) {
		t.Fatal("test setup: payload has no exp member to change")
	}
	mac, _ := b64.DecodeString(strings.Split(good, ".")[2])
	mac[0] ^= 0x01
	secret := strings.TrimPrefix(oldKey, "old:")
	h := sha256.Sum256([]byte("ann@example.com"))

	cases := []struct {
		name    string
		tok     string
		purpose string
		at      time.Time
		keys    *token.Keys
		want    error
	}{
		{"tampered payload", replacePart(good, 1, b64.EncodeToString(forged)), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"tampered signature", replacePart(good, 2, b64.EncodeToString(mac)), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"signature not base64", replacePart(good, 2, "!!!"), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"same key id, another secret", good, token.Unsubscribe, now, keys(t, "old:another-secret-of-16-bytes-or-more"), token.ErrBadSignature},
		{"key removed", good, token.Unsubscribe, now, keys(t, newKey), token.ErrUnknownKey},
		{"wrong purpose", good, token.Erase, now, ks, token.ErrWrongPurpose},
		{"expired", good, token.Unsubscribe, legacyExpiry, ks, token.ErrExpired},
		{"signed, 5-byte hash", signV1("old", secret, token.Claims{Purpose: token.Unsubscribe, EmailHMAC: []byte("short"), Expires: legacyExpiry}), token.Unsubscribe, now, ks, token.ErrMalformed},
		{"signed, payload not base64", func() string {
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte("mailslot-token-v1.old.!!!"))
			return "old.!!!." + b64.EncodeToString(m.Sum(nil))
		}(), token.Unsubscribe, now, ks, token.ErrMalformed},
		{"signed, payload JSON of another shape", func() string {
			p := b64.EncodeToString([]byte(`{"p":1}`))
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte("mailslot-token-v1.old." + p))
			return "old." + p + "." + b64.EncodeToString(m.Sum(nil))
		}(), token.Unsubscribe, now, ks, token.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.keys.Verify(c.tok, c.purpose, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %+v, %v; want error %v", got, err, c.want)
			}
			if got.EmailHMAC != nil || got.Purpose != "" {
				t.Errorf("a refused token still returned claims %+v", got)
			}
		})
	}
	// A first-format token cannot claim an issue time: IssuedAt is not
	// read from its JSON, so it cannot pass for one minted after a
	// withdrawal.
	c := token.Claims{Purpose: token.Confirm, EmailHMAC: h[:], Expires: legacyExpiry}
	tok := signV1("old", secret, c)
	body, _ = b64.DecodeString(strings.Split(tok, ".")[1])
	withIat := bytes.Replace(body, []byte(`{`), []byte(`{"IssuedAt":"2026-05-01T00:00:00Z","iat":1777593600,`), 1)
	p := b64.EncodeToString(withIat)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("mailslot-token-v1.old." + p))
	got, err := ks.Verify("old."+p+"."+b64.EncodeToString(m.Sum(nil)), token.Confirm, now)
	if err != nil || !got.IssuedAt.IsZero() {
		t.Errorf("first-format token with an issue time in its JSON: IssuedAt %v, %v; want zero", got.IssuedAt, err)
	}
}
