package secret_test

import (
	"crypto/subtle"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/secret"
)

const token = "admin-token-0123456789abcdef0123456789"

func TestEqual(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", token, token, true},
		{"both empty", "", "", true},
		{"empty guess", "", token, false},
		{"prefix", token[:10], token, false},
		{"one byte longer", token + "x", token, false},
		{"last byte differs", token[:len(token)-1] + "X", token, false},
		{"first byte differs", "X" + token[1:], token, false},
		{"case differs", strings.ToUpper(token), token, false},
		{"NUL padded", token + "\x00", token, false},
		{"much longer", strings.Repeat(token, 100), token, false},
	}
	for _, c := range cases {
		if got := secret.Equal(c.a, c.b); got != c.want {
			t.Errorf("%s: Equal = %v, want %v", c.name, got, c.want)
		}
		if got := secret.Equal(c.b, c.a); got != c.want {
			t.Errorf("%s: Equal swapped = %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkEqual compares guesses of other lengths than the secret's: the
// digest comparison costs the same whatever the guess's length (up to the
// hash's 64-byte blocks), while subtle.ConstantTimeCompare returns early
// on every length mismatch.
func BenchmarkEqual(b *testing.B) {
	for _, guess := range []struct{ name, s string }{
		{"empty", ""},
		{"short", token[:5]},
		{"same length", strings.Repeat("x", len(token))},
		{"right", token},
	} {
		b.Run("digest/"+guess.name, func(b *testing.B) {
			for b.Loop() {
				secret.Equal(guess.s, token)
			}
		})
		b.Run("subtle/"+guess.name, func(b *testing.B) {
			for b.Loop() {
				subtle.ConstantTimeCompare([]byte(guess.s), []byte(token))
			}
		})
	}
}
