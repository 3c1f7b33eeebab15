package challenge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
)

// BenchmarkPoWVerify measures what a sign-up pays to have its proof of
// work checked: decode, two SHA-256s (the solution and the HMAC), the
// replay store. Garbage must cost less than a real check.
func BenchmarkPoWVerify(b *testing.B) {
	const pool = 4096
	p := newPoW(b, challenge.PoWConfig{MaxNumber: 10})
	payloads := make([]string, pool)
	for i := range payloads {
		payloads[i] = challengetest.MustSolve(b, issue(b, p, property, t0)).Encode()
	}
	expect := at(t0.Add(time.Minute))
	ctx := context.Background()

	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		v := newPoW(b, challenge.PoWConfig{ReplayCapacity: pool})
		i := 0
		for b.Loop() {
			if i == pool {
				// Every payload was used once: a new store (same key) takes
				// them as fresh again.
				b.StopTimer()
				v, i = newPoW(b, challenge.PoWConfig{ReplayCapacity: pool}), 0
				b.StartTimer()
			}
			if r := v.Verify(ctx, payloads[i], expect); r.Verdict != challenge.Passed {
				b.Fatalf("verify: %s", r)
			}
			i++
		}
	})
	b.Run("replayed", func(b *testing.B) {
		b.ReportAllocs()
		v := newPoW(b, challenge.PoWConfig{})
		v.Verify(ctx, payloads[0], expect)
		for b.Loop() {
			if r := v.Verify(ctx, payloads[0], expect); r.Verdict != challenge.Replayed {
				b.Fatalf("verify: %s", r)
			}
		}
	})
	garbage := map[string]string{
		"oversized":     strings.Repeat("A", 1<<20),
		"not-base64":    strings.Repeat("!", 600),
		"bad-signature": tamperedSignature(b),
	}
	for name, payload := range garbage {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := p.Verify(ctx, payload, expect); r.Verdict != challenge.Failed {
					b.Fatalf("verify: %s", r)
				}
			}
		})
	}
}

// tamperedSignature is a correct solution whose signature is not ours:
// the most expensive way to fail.
func tamperedSignature(b *testing.B) string {
	pl := challengetest.MustSolve(b, issue(b, newPoW(b, challenge.PoWConfig{MaxNumber: 10}), property, t0))
	pl.Signature = strings.Repeat("0", 64)
	return pl.Encode()
}

// BenchmarkPoWIssue measures GET /v1/challenge's work.
func BenchmarkPoWIssue(b *testing.B) {
	b.ReportAllocs()
	p := newPoW(b, challenge.PoWConfig{MaxNumber: challenge.DefaultMaxNumber})
	for b.Loop() {
		if _, err := p.Issue(property, t0); err != nil {
			b.Fatal(err)
		}
	}
}
