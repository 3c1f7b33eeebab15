package challenge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
)

const property = "site.example"

var (
	powKey = []byte("pow-test-key-0123456789abcdef")
	t0     = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
)

func newPoW(t testing.TB, cfg challenge.PoWConfig) *challenge.PoW {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = powKey
	}
	if cfg.MaxNumber == 0 {
		cfg.MaxNumber = 1000 // cheap to solve in tests
	}
	p, err := challenge.NewPoW(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func issue(t testing.TB, p *challenge.PoW, prop string, now time.Time) challenge.Challenge {
	t.Helper()
	c, err := p.Issue(prop, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func at(now time.Time) challenge.Expect { return challenge.Expect{Property: property, Now: now} }

func TestPoWChallengeJSON(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	c := issue(t, p, property, t0)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 5 || m["algorithm"] != "SHA-256" || m["maxnumber"] != float64(1000) ||
		len(m["challenge"].(string)) != 64 || len(m["signature"].(string)) != 64 {
		t.Errorf("challenge JSON %s, want ALTCHA's five fields", b)
	}
	wantSuffix := "?expires=" + "1777637400" + "&property=site.example&"
	if salt := m["salt"].(string); !strings.HasSuffix(salt, wantSuffix) || len(salt) != 24+len(wantSuffix) {
		t.Errorf("salt %q, want 24 hex digits then %q", salt, wantSuffix)
	}
	if !c.Expires.Equal(t0.Add(challenge.DefaultPoWLifetime)) {
		t.Errorf("Expires = %v, want %v", c.Expires, t0.Add(challenge.DefaultPoWLifetime))
	}
}

func TestPoWAcceptsSolution(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	c := issue(t, p, property, t0)
	pl := challengetest.MustSolve(t, c)
	if r := p.Verify(context.Background(), pl.Encode(), at(t0.Add(time.Minute))); r.Verdict != challenge.Passed {
		t.Fatalf("verify: %s, want passed", r)
	}
	// The widget adds fields of its own ("took"); they change nothing.
	pl2 := challengetest.MustSolve(t, issue(t, p, property, t0))
	raw, _ := json.Marshal(map[string]any{"algorithm": pl2.Algorithm, "challenge": pl2.Challenge, "number": pl2.Number, "salt": pl2.Salt, "signature": pl2.Signature, "took": 42})
	if r := p.Verify(context.Background(), base64.StdEncoding.EncodeToString(raw), at(t0)); r.Verdict != challenge.Passed {
		t.Errorf("verify with took: %s, want passed", r)
	}
}

func TestPoWRefuses(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	other := newPoW(t, challenge.PoWConfig{Key: []byte("another-edge-key-0123456789")})
	solved := func() challengetest.Payload { return challengetest.MustSolve(t, issue(t, p, property, t0)) }
	later := t0.Add(time.Minute)
	tests := []struct {
		name    string
		payload func() string
		now     time.Time
		want    string
	}{
		{"empty", func() string { return "" }, later, "failed(missing)"},
		{"oversized", func() string { return strings.Repeat("A", challenge.MaxPayloadLen+4) }, later, "failed(malformed)"},
		{"not base64", func() string { return "!!not base64!!" }, later, "failed(malformed)"},
		{"not json", func() string { return base64.StdEncoding.EncodeToString([]byte("number=1")) }, later, "failed(malformed)"},
		{"json array", func() string { return base64.StdEncoding.EncodeToString([]byte(`[1,2]`)) }, later, "failed(malformed)"},
		{"number spelled 1e1", func() string {
			pl := solved()
			raw, _ := json.Marshal(pl)
			return base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"number":`, `"number":1e1,"x":`, 1)))
		}, later, "failed(malformed)"},
		{"negative number", func() string { pl := solved(); pl.Number = -pl.Number - 1; return pl.Encode() }, later, "failed(malformed)"},
		{"tampered number", func() string { pl := solved(); pl.Number++; return pl.Encode() }, later, "failed(invalid)"},
		{"tampered salt", func() string {
			pl := solved()
			pl.Salt = strings.Replace(pl.Salt, "expires=1777", "expires=1999", 1)
			return pl.Encode()
		}, later, "failed(invalid)"},
		{"salt without delimiter", func() string { pl := solved(); pl.Salt = strings.TrimSuffix(pl.Salt, "&"); return pl.Encode() }, later, "failed(malformed)"},
		{"salt with property twice", func() string { pl := solved(); pl.Salt += "property=x&"; return pl.Encode() }, later, "failed(malformed)"},
		{"tampered signature", func() string {
			pl := solved()
			pl.Signature = strings.Repeat("0", 64)
			return pl.Encode()
		}, later, "failed(signature)"},
		{"challenge recomputed for a spliced salt", func() string {
			// Move digits from the number into the salt: without the
			// trailing "&" this would stretch the expiry.
			pl := solved()
			pl.Salt += "1"
			return pl.Encode()
		}, later, "failed(malformed)"},
		{"tampered algorithm", func() string { pl := solved(); pl.Algorithm = "SHA-1"; return pl.Encode() }, later, "failed(algorithm)"},
		{"another edge's key", func() string { return challengetest.MustSolve(t, issue(t, other, property, t0)).Encode() }, later, "failed(signature)"},
		{"expired", func() string { return solved().Encode() }, t0.Add(challenge.DefaultPoWLifetime + time.Second), "failed(expired)"},
		{"another property", func() string { return challengetest.MustSolve(t, issue(t, p, "other.example", t0)).Encode() }, later, "failed(property)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Verify(context.Background(), tt.payload(), at(tt.now)).String(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if got := p.Status().Remembered; got != 0 {
		t.Errorf("refused payloads took %d places in the replay store", got)
	}
}

func TestPoWExpiresAtTheSecond(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{Lifetime: time.Minute})
	c := issue(t, p, property, t0)
	pl := challengetest.MustSolve(t, c).Encode()
	if got := p.Verify(context.Background(), pl, at(c.Expires.Add(time.Nanosecond))); got.String() != "failed(expired)" {
		t.Errorf("just past expiry: %s, want failed(expired)", got)
	}
	if got := p.Verify(context.Background(), pl, at(c.Expires)); got.Verdict != challenge.Passed {
		t.Errorf("at expiry: %s, want passed", got)
	}
}

func TestPoWReplay(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	pl := challengetest.MustSolve(t, issue(t, p, property, t0)).Encode()
	if r := p.Verify(context.Background(), pl, at(t0)); r.Verdict != challenge.Passed {
		t.Fatalf("first use: %s", r)
	}
	for _, now := range []time.Time{t0, t0.Add(challenge.DefaultPoWLifetime)} {
		if r := p.Verify(context.Background(), pl, at(now)); r.Verdict != challenge.Replayed || r.String() != "replayed" {
			t.Errorf("second use at %v: %s, want replayed", now.Sub(t0), r)
		}
	}
	// Another edge with the same key but its own store accepts it once:
	// single use is per edge (the edge that issued usually verifies).
	if r := newPoW(t, challenge.PoWConfig{}).Verify(context.Background(), pl, at(t0)); r.Verdict != challenge.Passed {
		t.Errorf("fresh store: %s, want passed", r)
	}
}

func TestPoWConcurrentUseOnce(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	pl := challengetest.MustSolve(t, issue(t, p, property, t0)).Encode()
	const n = 16
	verdicts := make(chan challenge.Verdict, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { verdicts <- p.Verify(context.Background(), pl, at(t0)).Verdict })
	}
	wg.Wait()
	close(verdicts)
	count := map[challenge.Verdict]int{}
	for v := range verdicts {
		count[v]++
	}
	if count[challenge.Passed] != 1 || count[challenge.Replayed] != n-1 {
		t.Errorf("verdicts %v, want one passed and %d replayed", count, n-1)
	}
}

func TestPoWReplayStoreFull(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{ReplayCapacity: 2, Lifetime: time.Minute})
	var pls []string
	for range 3 {
		pls = append(pls, challengetest.MustSolve(t, issue(t, p, property, t0)).Encode())
	}
	for i, pl := range pls[:2] {
		if r := p.Verify(context.Background(), pl, at(t0)); r.Verdict != challenge.Passed {
			t.Fatalf("payload %d: %s", i, r)
		}
	}
	// Full: the third is not passed, since it could not be remembered, but
	// it is kept unverified and a re-check may pass it.
	r := p.Verify(context.Background(), pls[2], at(t0))
	if r.String() != "unverified(store-full)" || !r.Retryable() {
		t.Fatalf("store full: %s (retryable %v), want unverified(store-full), retryable", r, r.Retryable())
	}
	if st := p.Status(); st.Remembered != 2 || st.Capacity != 2 || st.StoreFull != 1 {
		t.Errorf("status %+v, want 2 of 2 remembered, 1 refused for a full store", st)
	}
	// Replays are still caught while full.
	if r := p.Verify(context.Background(), pls[0], at(t0)); r.Verdict != challenge.Replayed {
		t.Errorf("replay while full: %s, want replayed", r)
	}
	// Once the remembered challenges expired they leave, making room for a
	// fresh challenge.
	later := t0.Add(time.Minute + 2*time.Second)
	fresh := challengetest.MustSolve(t, issue(t, p, property, later)).Encode()
	if r := p.Verify(context.Background(), fresh, at(later)); r.Verdict != challenge.Passed {
		t.Errorf("after expiry: %s, want passed", r)
	}
	if st := p.Status(); st.Remembered != 1 {
		t.Errorf("after expiry %d remembered, want 1", st.Remembered)
	}
}

func TestPoWCost(t *testing.T) {
	// A small cost keeps every secret number within it: Solve searches
	// only up to MaxNumber.
	cheap := newPoW(t, challenge.PoWConfig{MaxNumber: 50})
	for range 50 {
		c := issue(t, cheap, property, t0)
		if c.MaxNumber != 50 {
			t.Fatalf("maxnumber %d, want 50", c.MaxNumber)
		}
		challengetest.MustSolve(t, c)
	}
	// A higher cost is honoured: its challenges say so, and a number far
	// past the default is issued and accepted.
	dear := newPoW(t, challenge.PoWConfig{MaxNumber: 2_000_000})
	c, err := dear.IssueNumber(property, t0, 1_234_567)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxNumber != 2_000_000 {
		t.Errorf("maxnumber %d, want 2000000", c.MaxNumber)
	}
	pl := challengetest.MustSolve(t, c)
	if pl.Number != 1_234_567 {
		t.Errorf("solved with %d, want 1234567", pl.Number)
	}
	if r := dear.Verify(context.Background(), pl.Encode(), at(t0)); r.Verdict != challenge.Passed {
		t.Errorf("verify: %s", r)
	}
	if _, err := cheap.IssueNumber(property, t0, 51); err == nil {
		t.Error("issued a secret number above maxnumber")
	}
}

func TestPoWConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  challenge.PoWConfig
		want string
	}{
		{"short key", challenge.PoWConfig{Key: []byte("short")}, "key has 5 bytes"},
		{"negative cost", challenge.PoWConfig{Key: powKey, MaxNumber: -1}, "max number -1"},
		{"huge cost", challenge.PoWConfig{Key: powKey, MaxNumber: challenge.MaxMaxNumber + 1}, "outside"},
		{"lifetime under a second", challenge.PoWConfig{Key: powKey, Lifetime: time.Millisecond}, "under a second"},
		{"huge store", challenge.PoWConfig{Key: powKey, ReplayCapacity: challenge.MaxReplayCapacity + 1}, "replay capacity"},
	}
	for _, tt := range tests {
		_, err := challenge.NewPoW(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	p := newPoW(t, challenge.PoWConfig{})
	for _, bad := range []string{"", strings.Repeat("p", challenge.MaxPropertyLen+1), "site example", "site\x00"} {
		if _, err := p.Issue(bad, t0); err == nil || !strings.HasPrefix(err.Error(), "issue challenge: property") {
			t.Errorf("Issue(%q): error %v, want a property error", bad, err)
		}
	}
	if s := p.String(); strings.Contains(s, string(powKey)) {
		t.Errorf("String() = %q shows the key", s)
	}
}

func FuzzPoWVerify(f *testing.F) {
	p := newPoW(f, challenge.PoWConfig{})
	good := challengetest.MustSolve(f, issue(f, p, property, t0))
	f.Add(good.Encode())
	f.Add("")
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"algorithm":"SHA-256","number":1,"salt":"00000000?&"}`)))
	raw, _ := json.Marshal(good)
	f.Add(string(raw))
	f.Fuzz(func(t *testing.T, payload string) {
		// A fresh verifier each time: the good payload would be a replay.
		v := newPoW(t, challenge.PoWConfig{ReplayCapacity: 4})
		r := v.Verify(context.Background(), payload, at(t0))
		if r.Verdict != challenge.Passed {
			return
		}
		// Whatever passes must solve a challenge signed with our key, by
		// an independent reading of the protocol.
		var pl challengetest.Payload
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil || json.Unmarshal(b, &pl) != nil {
			t.Fatalf("passed an undecodable payload %q", payload)
		}
		sum := sha256.Sum256([]byte(pl.Salt + strconv.FormatInt(pl.Number, 10)))
		mac := hmac.New(sha256.New, powKey)
		mac.Write([]byte(pl.Challenge))
		if hex.EncodeToString(sum[:]) != pl.Challenge || hex.EncodeToString(mac.Sum(nil)) != pl.Signature ||
			pl.Algorithm != "SHA-256" || !strings.Contains(pl.Salt, "property=site.example&") {
			t.Fatalf("passed a payload that is not a solution of ours: %q", payload)
		}
	})
}
