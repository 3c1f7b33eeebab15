package challenge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
)

// These tests hold our proof of work to ALTCHA's own library
// (altcha-lib, protocol v1, pinned in testdata/altcha): an implementation
// that is not ours, in both directions.

const altchaDir = "testdata/altcha"

// altcha runs testdata/altcha/altcha.mjs in mode with input on stdin and
// returns its one line of output.
func altcha(t *testing.T, mode, input string, key []byte) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(altchaDir, "node_modules", "altcha-lib")); err != nil {
		t.Fatalf("altcha-lib is not installed in %s: run `make test-deps` (it runs npm ci there)", altchaDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (needed to run altcha-lib): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "altcha.mjs", mode)
	cmd.Dir = altchaDir
	cmd.Env = append(os.Environ(), "ALTCHA_HMAC_KEY="+string(key))
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node altcha.mjs %s: %v\n%s", mode, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func TestAltchaLibSolvesOurChallenge(t *testing.T) {
	now := time.Now()
	// A fixed secret number: altcha-lib hashes asynchronously (tens of
	// microseconds a try), so chance must not decide the test's length.
	p := newPoW(t, challenge.PoWConfig{MaxNumber: 200_000})
	c, err := p.IssueNumber(property, now, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := altcha(t, "solve", string(js), powKey)
	if r := p.Verify(context.Background(), payload, challenge.Expect{Property: property, Now: now}); r.Verdict != challenge.Passed {
		t.Fatalf("our verifier on altcha-lib's solution: %s", r)
	}
	if r := p.Verify(context.Background(), payload, challenge.Expect{Property: property, Now: now}); r.Verdict != challenge.Replayed {
		t.Errorf("second use of altcha-lib's solution: %s, want replayed", r)
	}
}

func TestAltchaLibVerifiesOurSolution(t *testing.T) {
	p := newPoW(t, challenge.PoWConfig{})
	c := issue(t, p, property, time.Now())
	good := challengetest.MustSolve(t, c)
	tampered := good
	tampered.Number++
	forged := good
	forged.Signature = strings.Repeat("a", 64)
	expired := challengetest.MustSolve(t, issue(t, p, property, time.Now().Add(-time.Hour)))
	tests := []struct {
		name    string
		payload challengetest.Payload
		want    bool
	}{
		{"ours", good, true},
		{"tampered number", tampered, false},
		{"forged signature", forged, false},
		{"expired", expired, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := altcha(t, "verify", tt.payload.Encode(), powKey)
			var got struct{ Verified bool }
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("altcha-lib said %q: %v", out, err)
			}
			if got.Verified != tt.want {
				t.Errorf("altcha-lib verifySolution = %v, want %v", got.Verified, tt.want)
			}
		})
	}
}

func TestOurVerifierTakesAltchaLibChallenge(t *testing.T) {
	// A challenge altcha-lib created with our key and the parameters we
	// use (in its own order) is one we accept once solved: our salt
	// parser reads ALTCHA's format, not only our own spelling of it.
	now := time.Now()
	in, _ := json.Marshal(map[string]any{"property": property, "expires": now.Add(5 * time.Minute).Unix(), "maxnumber": 5000})
	var c challenge.Challenge
	if err := json.Unmarshal([]byte(altcha(t, "create", string(in), powKey)), &c); err != nil {
		t.Fatal(err)
	}
	p := newPoW(t, challenge.PoWConfig{})
	payload := altcha(t, "solve", mustJSON(t, c), powKey)
	if r := p.Verify(context.Background(), payload, challenge.Expect{Property: property, Now: now}); r.Verdict != challenge.Passed {
		t.Fatalf("our verifier on altcha-lib's challenge and solution: %s (salt %q)", r, c.Salt)
	}
	if r := p.Verify(context.Background(), payload, challenge.Expect{Property: "other.example", Now: now}); r.Verdict != challenge.Failed {
		t.Errorf("for another property: %s, want failed", r)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
