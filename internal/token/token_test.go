package token_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/token"
)

const (
	oldKey = "old:0123456789abcdef-old-secret"
	newKey = "new:fedcba9876543210-new-secret"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func keys(t testing.TB, s string) *token.Keys {
	t.Helper()
	ks, err := token.ParseKeys(s)
	if err != nil {
		t.Fatalf("ParseKeys(%q): %v", s, err)
	}
	return ks
}

func claims(purpose string) token.Claims {
	h := sha256.Sum256([]byte("ann@example.com"))
	return token.Claims{Purpose: purpose, Property: "site.example", EmailHMAC: h[:], Expires: now.Add(60 * 24 * time.Hour)}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	ks := keys(t, oldKey)
	for _, purpose := range []string{token.Confirm, token.Unsubscribe, token.Erase} {
		for _, property := range []string{"site.example", ""} {
			want := claims(purpose)
			want.Property = property
			want.IssuedAt = now.Add(-90*time.Minute + 123456*time.Microsecond)
			tok := ks.Sign(want)
			kid, sealed, ok := strings.Cut(tok, ".")
			if !ok || kid != "old" || strings.Contains(sealed, ".") {
				t.Errorf("%s token %q is not <kid>.<sealed> with the signing key's id", purpose, tok)
			}
			if strings.Trim(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
				t.Errorf("token %q is not URL-safe as it is", tok)
			}
			if len(tok) > 160 {
				t.Errorf("token is %d characters long; links should stay short", len(tok))
			}
			got, err := ks.Verify(tok, purpose, now)
			if err != nil {
				t.Fatalf("Verify(%s): %v", purpose, err)
			}
			if got.Purpose != purpose || got.Property != want.Property || !bytes.Equal(got.EmailHMAC, want.EmailHMAC) ||
				!got.Expires.Equal(want.Expires) || !got.IssuedAt.Equal(want.IssuedAt) || got.ExpUnix != want.Expires.Unix() {
				t.Errorf("Verify(%s) = %+v, want %+v", purpose, got, want)
			}
		}
	}
}

// TestSignStampsIssuedAt checks that a token minted without an issue time
// carries the time it was minted: the edge refuses confirm links minted
// before a later withdrawal, which needs every new link to say when.
func TestSignStampsIssuedAt(t *testing.T) {
	ks := keys(t, oldKey)
	c := claims(token.Confirm)
	c.Expires = time.Now().Add(time.Hour)
	before := time.Now().Truncate(time.Microsecond)
	tok := ks.Sign(c)
	after := time.Now()
	got, err := ks.Verify(tok, token.Confirm, before)
	if err != nil {
		t.Fatal(err)
	}
	if got.IssuedAt.Before(before) || got.IssuedAt.After(after) {
		t.Errorf("IssuedAt = %v, want between %v and %v", got.IssuedAt, before, after)
	}
}

// TestTokenIsOpaque checks that a token reveals nothing of its claims: the
// email HMAC is the same for one person on every property, so two links
// that carried it readably could be tied to one person.
func TestTokenIsOpaque(t *testing.T) {
	ks := keys(t, oldKey)
	a, b := claims(token.Unsubscribe), claims(token.Unsubscribe)
	b.Property = "other.example"
	ta, tb, ta2 := ks.Sign(a), ks.Sign(b), ks.Sign(a)
	if ta == ta2 {
		t.Error("two tokens for the same claims are identical")
	}
	for _, tok := range []string{ta, tb, ta2} {
		_, sealed, _ := strings.Cut(tok, ".")
		raw, err := base64.RawURLEncoding.DecodeString(sealed)
		if err != nil {
			t.Fatalf("sealed part of %q: %v", tok, err)
		}
		for _, secret := range [][]byte{a.EmailHMAC, a.EmailHMAC[:8], a.EmailHMAC[24:], []byte("site.example"), []byte("other.example"), []byte("unsubscribe")} {
			if bytes.Contains(raw, secret) {
				t.Errorf("token %q carries %q in the clear", tok, secret)
			}
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			for i := range 3 { // each alignment of the hash inside a base64 text
				if s := enc.EncodeToString(a.EmailHMAC[i:])[4:20]; strings.Contains(tok, s) {
					t.Errorf("token %q carries the email HMAC in base64", tok)
				}
			}
		}
	}
	// The two properties' tokens share nothing but the key id.
	_, sa, _ := strings.Cut(ta, ".")
	_, sb, _ := strings.Cut(tb, ".")
	for i := 0; i+12 <= len(sa); i++ {
		if strings.Contains(sb, sa[i:i+12]) {
			t.Errorf("tokens for two properties share %q", sa[i:i+12])
		}
	}
}

// replacePart swaps part i (0 key id, 1 payload, 2 mac) of a token.
func replacePart(tok string, i int, v string) string {
	parts := strings.Split(tok, ".")
	parts[i] = v
	return strings.Join(parts, ".")
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	ks := keys(t, oldKey)
	good := ks.Sign(claims(token.Unsubscribe))
	b64 := base64.RawURLEncoding
	sealed, _ := b64.DecodeString(strings.Split(good, ".")[1])
	withSealed := func(f func(b []byte) []byte) string {
		return "old." + b64.EncodeToString(f(bytes.Clone(sealed)))
	}
	otherSecret := keys(t, "old:another-secret-of-16-bytes-or-more")
	// Two keys: a token's key id cannot be swapped for another configured one.
	twoKeys := keys(t, newKey+","+oldKey)

	cases := []struct {
		name    string
		tok     string
		purpose string
		at      time.Time
		keys    *token.Keys
		want    error
	}{
		{"tampered ciphertext", withSealed(func(b []byte) []byte { b[20] ^= 1; return b }), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"tampered nonce", withSealed(func(b []byte) []byte { b[1] ^= 1; return b }), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"tampered tag", withSealed(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"truncated", withSealed(func(b []byte) []byte { return b[:len(b)-1] }), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"only the version byte", withSealed(func(b []byte) []byte { return b[:1] }), token.Unsubscribe, now, ks, token.ErrBadSignature},
		{"unknown version", withSealed(func(b []byte) []byte { b[0] = 3; return b }), token.Unsubscribe, now, ks, token.ErrMalformed},
		{"sealed part not base64", "old.!!!", token.Unsubscribe, now, ks, token.ErrMalformed},
		{"sealed part empty", "old.", token.Unsubscribe, now, ks, token.ErrMalformed},
		{"same key id, another secret", good, token.Unsubscribe, now, otherSecret, token.ErrBadSignature},
		{"key id swapped for another configured one", replacePart(good, 0, "new"), token.Unsubscribe, now, twoKeys, token.ErrBadSignature},
		{"unknown key id", replacePart(good, 0, "k9"), token.Unsubscribe, now, ks, token.ErrUnknownKey},
		{"wrong purpose: unsubscribe link used to erase", good, token.Erase, now, ks, token.ErrWrongPurpose},
		{"wrong purpose: unsubscribe link used to confirm", good, token.Confirm, now, ks, token.ErrWrongPurpose},
		{"expired: at the expiry second", good, token.Unsubscribe, now.Add(60 * 24 * time.Hour), ks, token.ErrExpired},
		{"expired: a day later", good, token.Unsubscribe, now.Add(61 * 24 * time.Hour), ks, token.ErrExpired},
		{"one part", "old", token.Unsubscribe, now, ks, token.ErrMalformed},
		{"four parts", good + ".x.y", token.Unsubscribe, now, ks, token.ErrMalformed},
		{"empty", "", token.Unsubscribe, now, ks, token.ErrMalformed},
		{"too long", good + strings.Repeat("A", 1024), token.Unsubscribe, now, ks, token.ErrMalformed},
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

	// Every single-bit change anywhere in the sealed part is caught.
	for i := range sealed {
		tok := withSealed(func(b []byte) []byte { b[i] ^= 0x40; return b })
		if _, err := ks.Verify(tok, token.Unsubscribe, now); err == nil {
			t.Errorf("a token with byte %d changed still verifies", i)
		}
	}

	// A validly sealed payload that is not a token's (no 32-byte hash).
	short := keys(t, oldKey).Sign(token.Claims{Purpose: token.Unsubscribe, EmailHMAC: []byte("short"), Expires: now.Add(time.Hour)})
	if _, err := ks.Verify(short, token.Unsubscribe, now); !errors.Is(err, token.ErrMalformed) {
		t.Errorf("token with a 5-byte hash: err = %v, want ErrMalformed", err)
	}
	// Still valid one second before expiry.
	if _, err := ks.Verify(good, token.Unsubscribe, now.Add(60*24*time.Hour-time.Second)); err != nil {
		t.Errorf("one second before expiry: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	before := keys(t, oldKey)
	oldTok := before.Sign(claims(token.Unsubscribe))

	// A new key is put first; the old one stays after it.
	after := keys(t, newKey+","+oldKey)
	if _, err := after.Verify(oldTok, token.Unsubscribe, now); err != nil {
		t.Fatalf("a link signed with the old key stopped working after rotation: %v", err)
	}
	newTok := after.Sign(claims(token.Unsubscribe))
	if !strings.HasPrefix(newTok, "new.") {
		t.Errorf("new links are signed with %q, want the first key \"new\"", strings.Split(newTok, ".")[0])
	}
	if _, err := after.Verify(newTok, token.Unsubscribe, now); err != nil {
		t.Errorf("new link: %v", err)
	}
	// Edges not yet rotated do not know the new key.
	if _, err := before.Verify(newTok, token.Unsubscribe, now); !errors.Is(err, token.ErrUnknownKey) {
		t.Errorf("new link at an edge without the new key: err = %v, want ErrUnknownKey", err)
	}
	// Once the old key is removed, its links stop working.
	retired := keys(t, newKey)
	if _, err := retired.Verify(oldTok, token.Unsubscribe, now); !errors.Is(err, token.ErrUnknownKey) {
		t.Errorf("old link after its key was removed: err = %v, want ErrUnknownKey", err)
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	// A bare secret gets the id k1.
	ks := keys(t, "  0123456789abcdef0123  ")
	if tok := ks.Sign(claims(token.Confirm)); !strings.HasPrefix(tok, "k1.") {
		t.Errorf("bare secret signs with %q, want k1", strings.Split(tok, ".")[0])
	}
	// Spaces and empty entries around the list are ignored.
	if _, err := token.ParseKeys(" , " + newKey + " ,, " + oldKey + ","); err != nil {
		t.Errorf("list with blanks: %v", err)
	}
	bad := []struct{ in, mentions string }{
		{"", "no token key"},
		{" , ", "no token key"},
		{"k1:short", "shorter than 16"},
		{"0123456789abcde", "shorter than 16"},
		{":0123456789abcdef", "key id"},
		{"a.b:0123456789abcdef", "key id"},
		{"a b:0123456789abcdef", "key id"},
		{"abcdefghijklmnopq:0123456789abcdef", "key id"},
		{"k1:0123456789abcdef,k1:fedcba9876543210", "twice"},
		{"0123456789abcdef,fedcba9876543210", "twice"}, // two bare secrets are both k1
	}
	for _, c := range bad {
		ks, err := token.ParseKeys(c.in)
		if err == nil {
			t.Errorf("ParseKeys(%q) = %v, want an error", c.in, ks)
			continue
		}
		if !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("ParseKeys(%q) error %q does not mention %q", c.in, err, c.mentions)
		}
		if strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("ParseKeys(%q) error %q quotes the secret", c.in, err)
		}
	}
}

// FuzzVerify feeds Verify damaged and made-up tokens: it must refuse them
// with one of its errors, never panic, and never return claims that no key
// holder minted. (Sign's nonces are random, so each fuzzing process mints
// its own seed: a token is judged by the claims it yields.)
func FuzzVerify(f *testing.F) {
	ks := keys(f, oldKey)
	minted := claims(token.Confirm)
	f.Add(ks.Sign(minted))
	f.Add(legacyTokens[token.Confirm])
	f.Add("old.AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("old..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ks.Verify(tok, token.Confirm, now)
		if err != nil {
			for _, known := range []error{token.ErrMalformed, token.ErrUnknownKey, token.ErrBadSignature, token.ErrWrongPurpose, token.ErrExpired} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Verify(%q): unexpected error %v", tok, err)
		}
		legacy := tok == legacyTokens[token.Confirm]
		if c.Purpose != token.Confirm || c.Property != minted.Property || !bytes.Equal(c.EmailHMAC, minted.EmailHMAC) ||
			!legacy && !c.Expires.Equal(minted.Expires) || legacy && !c.Expires.Equal(legacyExpiry) {
			t.Fatalf("Verify(%q) = %+v, claims nobody minted", tok, c)
		}
	})
}
