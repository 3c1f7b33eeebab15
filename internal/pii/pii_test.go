package pii

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
	"sync"
	"testing"
)

// TestHasherMatchesHMAC holds the reused hashers to a fresh HMAC for every
// input, from concurrent goroutines: a hasher that kept state from one
// address would give another address's hash.
func TestHasherMatchesHMAC(t *testing.T) {
	t.Parallel()
	pepper := []byte("test pepper")
	h := NewHasher(pepper)
	want := func(label, s string) []byte {
		m := hmac.New(sha256.New, derive(pepper, label))
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				s := strconv.Itoa(g) + "-" + strconv.Itoa(i) + "@example.com"
				if got := h.Email(s); !bytes.Equal(got, want("mailslot/email/v1", s)) {
					t.Errorf("Email(%q) = %x", s, got)
					return
				}
				if got := h.IP(s); !bytes.Equal(got, want("mailslot/ip/v1", s)) {
					t.Errorf("IP(%q) = %x", s, got)
					return
				}
			}
		})
	}
	wg.Wait()
	if bytes.Equal(h.Email("a@example.com"), h.IP("a@example.com")) {
		t.Error("email and IP hashes share a key")
	}
}
