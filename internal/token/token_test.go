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

func keys(t *testing.T, s string) *token.Keys {
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
		want := claims(purpose)
		tok := ks.Sign(want)
		if !strings.HasPrefix(tok, "old.") || strings.Count(tok, ".") != 2 {
			t.Errorf("%s token %q is not <kid>.<payload>.<mac> with the signing key's id", purpose, tok)
		}
		if strings.Contains(tok, "ann") || strings.Contains(tok, "example.com") {
			t.Errorf("token %q carries the address", tok)
		}
		got, err := ks.Verify(tok, purpose, now)
		if err != nil {
			t.Fatalf("Verify(%s): %v", purpose, err)
		}
		if got.Purpose != purpose || got.Property != want.Property || !bytes.Equal(got.EmailHMAC, want.EmailHMAC) ||
			!got.Expires.Equal(want.Expires) {
			t.Errorf("Verify(%s) = %+v, want %+v", purpose, got, want)
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

	// A payload that says something else (a longer expiry), signed by
	// nobody: the MAC no longer matches.
	body, _ := b64.DecodeString(strings.Split(good, ".")[1])
	forged := bytes.Replace(body, []byte(`"exp":`), []byte(`"exp":9`), 1)
	if bytes.Equal(forged, body) {
		t.Fatal("test setup: payload has no exp member to change")
	}
	mac, _ := b64.DecodeString(strings.Split(good, ".")[2])
	mac[0] ^= 0x01
	otherSecret := keys(t, "old:another-secret-of-16-bytes-or-more")

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
		{"same key id, another secret", good, token.Unsubscribe, now, otherSecret, token.ErrBadSignature},
		{"unknown key id", replacePart(good, 0, "k9"), token.Unsubscribe, now, ks, token.ErrUnknownKey},
		{"wrong purpose: unsubscribe link used to erase", good, token.Erase, now, ks, token.ErrWrongPurpose},
		{"wrong purpose: unsubscribe link used to confirm", good, token.Confirm, now, ks, token.ErrWrongPurpose},
		{"expired: at the expiry second", good, token.Unsubscribe, now.Add(60 * 24 * time.Hour), ks, token.ErrExpired},
		{"expired: a day later", good, token.Unsubscribe, now.Add(61 * 24 * time.Hour), ks, token.ErrExpired},
		{"two parts", "old." + strings.Split(good, ".")[1], token.Unsubscribe, now, ks, token.ErrMalformed},
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

	// A validly signed payload that is not a token's (no 32-byte hash).
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
