package challengetest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/mailslot/mailslot/internal/challenge"
)

// Payload is the ALTCHA widget's answer before encoding; tests change its
// fields to tamper with a solution.
type Payload struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	Number    int64  `json:"number"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
}

// Encode returns the payload as the widget sends it: base64 of its JSON.
func (p Payload) Encode() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // strings and an integer always marshal
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Solve finds the number that solves c, by trying every number from 0 to
// c.MaxNumber as the widget does.
func Solve(c challenge.Challenge) (Payload, error) {
	want, err := hex.DecodeString(c.Challenge)
	if err != nil || len(want) != sha256.Size {
		return Payload{}, fmt.Errorf("solve challenge: challenge is not a hex SHA-256")
	}
	buf := make([]byte, len(c.Salt), len(c.Salt)+20)
	copy(buf, c.Salt)
	for n := int64(0); n <= c.MaxNumber; n++ {
		sum := sha256.Sum256(strconv.AppendInt(buf[:len(c.Salt)], n, 10))
		if string(sum[:]) == string(want) {
			return Payload{Algorithm: c.Algorithm, Challenge: c.Challenge, Number: n, Salt: c.Salt, Signature: c.Signature}, nil
		}
	}
	return Payload{}, fmt.Errorf("solve challenge: no number up to %d solves it", c.MaxNumber)
}

// MustSolve is Solve for tests: it fails t on error.
func MustSolve(t testing.TB, c challenge.Challenge) Payload {
	t.Helper()
	p, err := Solve(c)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}
