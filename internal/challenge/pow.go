package challenge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proof-of-work limits and defaults.
const (
	// Algorithm is the one ALTCHA algorithm issued and accepted.
	Algorithm = "SHA-256"
	// DefaultMaxNumber is the default cost: a browser tries on average
	// half of it (tens of milliseconds at this size).
	DefaultMaxNumber = 100_000
	// MaxMaxNumber bounds the configurable cost; past it a phone would
	// take many seconds.
	MaxMaxNumber = 100_000_000
	// DefaultPoWLifetime is how long an issued challenge can be solved and
	// sent: long enough to fill in a form after the page loaded.
	DefaultPoWLifetime = 10 * time.Minute
	// DefaultReplayCapacity is how many used challenges the replay store
	// remembers (about 5 MB, allocated when the verifier is made).
	DefaultReplayCapacity = 1 << 16
	// MaxReplayCapacity bounds the store for a 256 MB edge.
	MaxReplayCapacity = 1 << 22
	// MinKeyLen is the shortest HMAC key accepted.
	MinKeyLen = 16
	// MaxPropertyLen is the longest property a challenge is bound to.
	MaxPropertyLen = 64
	// MaxPayloadLen is the longest payload looked at; ours are about 600
	// characters.
	MaxPayloadLen = 2048
	saltBytes     = 12
	maxNumberLen  = 15 // digits: within a JavaScript number's exact integers
)

// PoWConfig configures the proof-of-work issuer and verifier, one per
// edge: every property's challenges are signed with the same key and told
// apart by the property in their salt.
type PoWConfig struct {
	// Key signs challenges (HMAC-SHA256); at least MinKeyLen bytes. Every
	// edge that may receive a solution needs the same key.
	Key []byte
	// MaxNumber is the cost: the secret number is at most this; zero
	// means DefaultMaxNumber.
	MaxNumber int64
	// Lifetime is how long a challenge stays valid; zero means
	// DefaultPoWLifetime.
	Lifetime time.Duration
	// ReplayCapacity is how many used challenges are remembered; zero
	// means DefaultReplayCapacity. It should exceed the sign-ups one edge
	// takes within one Lifetime.
	ReplayCapacity int
}

// Challenge is an ALTCHA challenge, marshalled with ALTCHA's field names
// for the widget (GET /v1/challenge).
type Challenge struct {
	Algorithm string `json:"algorithm"`
	Challenge string `json:"challenge"`
	MaxNumber int64  `json:"maxnumber"`
	Salt      string `json:"salt"`
	Signature string `json:"signature"`
	// Expires is when the challenge stops being accepted (also in the
	// salt); for a Cache-Control header, not sent in the JSON.
	Expires time.Time `json:"-"`
}

// PoW issues ALTCHA challenges and verifies their solutions. It is safe
// for concurrent use.
type PoW struct {
	key       []byte
	maxNumber int64
	lifetime  time.Duration
	macs      sync.Pool // of hash.Hash, HMAC-SHA256 with key
	replays   *replayStore
	full      atomic.Uint64
}

// PoWStatus is the replay store's state, for metrics.
type PoWStatus struct {
	Remembered int    // used challenges remembered now
	Capacity   int    // most it remembers
	StoreFull  uint64 // solutions left unverified because it was full
}

// NewPoW checks cfg and allocates the replay store.
func NewPoW(cfg PoWConfig) (*PoW, error) {
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("configure proof of work: key has %d bytes, want at least %d", len(cfg.Key), MinKeyLen)
	}
	if cfg.MaxNumber == 0 {
		cfg.MaxNumber = DefaultMaxNumber
	}
	if cfg.MaxNumber < 1 || cfg.MaxNumber > MaxMaxNumber {
		return nil, fmt.Errorf("configure proof of work: max number %d is outside 1..%d", cfg.MaxNumber, MaxMaxNumber)
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultPoWLifetime
	}
	if cfg.Lifetime < time.Second {
		return nil, fmt.Errorf("configure proof of work: lifetime %v is under a second", cfg.Lifetime)
	}
	if cfg.ReplayCapacity == 0 {
		cfg.ReplayCapacity = DefaultReplayCapacity
	}
	if cfg.ReplayCapacity < 1 || cfg.ReplayCapacity > MaxReplayCapacity {
		return nil, fmt.Errorf("configure proof of work: replay capacity %d is outside 1..%d", cfg.ReplayCapacity, MaxReplayCapacity)
	}
	key := append([]byte(nil), cfg.Key...)
	p := &PoW{key: key, maxNumber: cfg.MaxNumber, lifetime: cfg.Lifetime, replays: newReplayStore(cfg.ReplayCapacity)}
	p.macs.New = func() any { return hmac.New(sha256.New, key) }
	return p, nil
}

// Kind returns KindPoW.
func (*PoW) Kind() Kind { return KindPoW }

// String describes the verifier without its key.
func (p *PoW) String() string {
	return fmt.Sprintf("pow(maxnumber=%d, lifetime=%v)", p.maxNumber, p.lifetime)
}

// LogValue logs the verifier without its key.
func (p *PoW) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", "pow"), slog.Int64("maxnumber", p.maxNumber), slog.Duration("lifetime", p.lifetime))
}

// Status reports the replay store's state.
func (p *PoW) Status() PoWStatus {
	return PoWStatus{Remembered: p.replays.len(), Capacity: len(p.replays.ring), StoreFull: p.full.Load()}
}

// Issue returns a new challenge for property, valid from now for the
// configured lifetime.
func (p *PoW) Issue(property string, now time.Time) (Challenge, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(p.maxNumber+1))
	if err != nil {
		return Challenge{}, fmt.Errorf("issue challenge: draw the secret number: %w", err)
	}
	return p.issue(property, now, n.Int64())
}

// issue builds the challenge whose secret number is number.
func (p *PoW) issue(property string, now time.Time, number int64) (Challenge, error) {
	if err := checkProperty(property); err != nil {
		return Challenge{}, fmt.Errorf("issue challenge: %w", err)
	}
	if number < 0 || number > p.maxNumber {
		return Challenge{}, fmt.Errorf("issue challenge: secret number %d is outside 0..%d", number, p.maxNumber)
	}
	var raw [saltBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand since Go 1.24)
	expires := now.Add(p.lifetime).Unix()
	salt := hex.EncodeToString(raw[:]) + "?expires=" + strconv.FormatInt(expires, 10) +
		"&property=" + url.QueryEscape(property) + "&"
	sum := sha256.Sum256([]byte(salt + strconv.FormatInt(number, 10)))
	challenge := hex.EncodeToString(sum[:])
	var sig [sha256.Size * 2]byte
	p.sign(sig[:], challenge)
	return Challenge{
		Algorithm: Algorithm,
		Challenge: challenge,
		MaxNumber: p.maxNumber,
		Salt:      salt,
		Signature: string(sig[:]),
		Expires:   time.Unix(expires, 0),
	}, nil
}

func checkProperty(property string) error {
	if property == "" {
		return errors.New("property is empty")
	}
	if len(property) > MaxPropertyLen {
		return fmt.Errorf("property is longer than %d bytes", MaxPropertyLen)
	}
	for i := 0; i < len(property); i++ {
		if c := property[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("property has a byte (0x%02x) outside printable ASCII", c)
		}
	}
	return nil
}

// sign writes the hex HMAC-SHA256 of the hex challenge into dst, as ALTCHA
// signs it.
func (p *PoW) sign(dst []byte, challenge string) {
	m := p.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(challenge))
	var sum [sha256.Size]byte
	hex.Encode(dst, m.Sum(sum[:0]))
	p.macs.Put(m)
}

// payload is what the ALTCHA widget sends back, base64-encoded JSON.
// Other fields it adds (took, test) are ignored.
type payload struct {
	Algorithm string      `json:"algorithm"`
	Challenge string      `json:"challenge"`
	Number    json.Number `json:"number"`
	Salt      string      `json:"salt"`
	Signature string      `json:"signature"`
}

// Verify checks an ALTCHA payload: SHA-256, sha256(salt+number) equal to
// the challenge, the challenge signed with this key (compared in constant
// time), not expired at expect.Now, issued for expect.Property, and not
// used before. Checks run cheapest first, so garbage costs a length test
// or a failed decode; no hash is computed before the payload's shape is
// right.
func (p *PoW) Verify(_ context.Context, token string, expect Expect) Result {
	if token == "" {
		return failed(ReasonMissing)
	}
	if len(token) > MaxPayloadLen {
		return failed(ReasonMalformed)
	}
	// Sized to the token: json.Unmarshal keeps its input on the heap.
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(token)))
	n, err := base64.StdEncoding.Decode(raw, []byte(token))
	if err != nil {
		return failed(ReasonMalformed)
	}
	var pl payload
	if err := json.Unmarshal(raw[:n], &pl); err != nil {
		return failed(ReasonMalformed)
	}
	if pl.Algorithm != Algorithm {
		return failed(ReasonAlgorithm)
	}
	number := pl.Number.String()
	if !canonicalNumber(number) || len(pl.Challenge) != sha256.Size*2 || len(pl.Signature) != sha256.Size*2 {
		return failed(ReasonMalformed)
	}
	expires, property, ok := parseSalt(pl.Salt)
	if !ok {
		return failed(ReasonMalformed)
	}

	var buf [MaxPayloadLen]byte
	msg := append(append(buf[:0], pl.Salt...), number...)
	sum := sha256.Sum256(msg)
	var sumHex [sha256.Size * 2]byte
	hex.Encode(sumHex[:], sum[:])
	if subtle.ConstantTimeCompare(sumHex[:], []byte(pl.Challenge)) != 1 {
		return failed(ReasonInvalid)
	}
	var sig [sha256.Size * 2]byte
	p.sign(sig[:], pl.Challenge)
	if subtle.ConstantTimeCompare(sig[:], []byte(pl.Signature)) != 1 {
		return failed(ReasonSignature)
	}

	now := expect.now()
	if now.After(time.Unix(expires, 0)) {
		return failed(ReasonExpired)
	}
	if property != expect.Property {
		return failed(ReasonProperty)
	}
	var key replayKey
	copy(key[:], sum[:])
	switch p.replays.remember(key, expires, now.Unix()) {
	case addSeen:
		return Result{Verdict: Replayed}
	case addFull:
		p.full.Add(1)
		return unverified(ReasonStoreFull)
	}
	return passed()
}

// canonicalNumber reports whether s is a non-negative integer written as
// JavaScript writes it (no sign, exponent, fraction or leading zero): the
// widget hashes salt + String(number), so any other spelling would hash
// differently.
func canonicalNumber(s string) bool {
	if s == "" || len(s) > maxNumberLen || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseSalt reads "<hex>?<params>&": the expiry and the property. The
// trailing "&" is ALTCHA's delimiter against splicing digits of the number
// into the last parameter; a salt without it, with a parameter twice, or
// without both parameters is refused.
func parseSalt(salt string) (expires int64, property string, ok bool) {
	q := strings.IndexByte(salt, '?')
	if q < 8 || q > 128 || !strings.HasSuffix(salt, "&") {
		return 0, "", false
	}
	for i := 0; i < q; i++ {
		if c := salt[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, "", false
		}
	}
	var haveExpires, haveProperty bool
	for rest := salt[q+1 : len(salt)-1]; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "expires":
			if haveExpires || v == "" || len(v) > 12 || !canonicalNumber(v) {
				return 0, "", false
			}
			e, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, "", false
			}
			expires, haveExpires = e, true
		case "property":
			if haveProperty {
				return 0, "", false
			}
			p, err := url.QueryUnescape(v)
			if err != nil {
				return 0, "", false
			}
			property, haveProperty = p, true
		}
	}
	return expires, property, haveExpires && haveProperty
}
