package challenge

import (
	"fmt"
	"time"
)

// Verdict is the outcome of one check. Its String is the stable name used
// in stored status and metrics.
//
// The zero value is Unverified, so a Result that was never filled in gets
// no mail.
type Verdict uint8

// The verdicts.
const (
	// Unverified: the verifier could not decide (unreachable, timed out,
	// 5xx, an answer that is not JSON, or mailslot misconfigured). The
	// sign-up is kept and a re-check may still pass it.
	Unverified Verdict = iota
	// Passed: the verifier vouched for the token or the solution.
	Passed
	// Failed: the token or solution was refused; Result.Reason says why.
	Failed
	// Replayed: a proof-of-work solution that was already used.
	Replayed
)

var verdictNames = [...]string{
	Unverified: "unverified",
	Passed:     "passed",
	Failed:     "failed",
	Replayed:   "replayed",
}

// String returns passed, failed, unverified or replayed.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// MarshalText stores a verdict by its name.
func (v Verdict) MarshalText() ([]byte, error) {
	if int(v) >= len(verdictNames) {
		return nil, fmt.Errorf("marshal verdict: unknown verdict %d", uint8(v))
	}
	return []byte(verdictNames[v]), nil
}

// UnmarshalText reads a verdict's name.
func (v *Verdict) UnmarshalText(b []byte) error {
	p, err := ParseVerdict(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// ParseVerdict reads a verdict's stable name, as String writes it.
func ParseVerdict(s string) (Verdict, error) {
	for i, name := range verdictNames {
		if s == name {
			return Verdict(i), nil
		}
	}
	return Unverified, fmt.Errorf("parse verdict %q: want passed, failed, unverified or replayed", s)
}

// Reason is a stable, machine-readable code that says why a check failed
// or could not decide. It never carries the token, the secret or the
// payload.
type Reason string

// Reasons for Failed.
const (
	ReasonMissing   Reason = "missing"   // no token or payload was sent
	ReasonMalformed Reason = "malformed" // too long, not base64, not JSON, fields of the wrong form
	ReasonInvalid   Reason = "invalid"   // the provider refused the token; the solution does not solve the challenge
	ReasonExpired   Reason = "expired"   // expired (Turnstile's timeout-or-duplicate: expired or already used)
	ReasonUsed      Reason = "used"      // hCaptcha's already-seen-response
	ReasonHostname  Reason = "hostname"  // solved on a hostname this property does not expect
	ReasonAction    Reason = "action"    // Turnstile widget action other than the expected one
	ReasonAlgorithm Reason = "algorithm" // proof of work: not SHA-256
	ReasonSignature Reason = "signature" // proof of work: not signed by this edge's key
	ReasonProperty  Reason = "property"  // proof of work: issued for another property
)

// Reasons for Unverified.
const (
	ReasonTimeout     Reason = "timeout"      // no answer within the timeout, or the caller gave up
	ReasonUnreachable Reason = "unreachable"  // connection refused, DNS, TLS or another transport error
	ReasonStatus      Reason = "status"       // 5xx, or another status without a siteverify answer
	ReasonResponse    Reason = "bad-response" // an answer that is not siteverify's JSON
	ReasonProvider    Reason = "provider"     // the provider reported its own internal error
	ReasonConfig      Reason = "config"       // the provider refused mailslot's secret, site key or request
	ReasonStoreFull   Reason = "store-full"   // proof of work: the replay store is full (fails closed)
)

// Result is the outcome of one check and what the verifier learned.
type Result struct {
	Verdict Verdict
	// Reason is empty when the check passed.
	Reason Reason
	// Hostname, Action and ChallengeTS are siteverify's answer, when there
	// was one: where and when the widget was solved.
	Hostname    string
	Action      string
	ChallengeTS time.Time
	// ErrorCodes are the provider's documented error codes, if any.
	ErrorCodes []string
}

// Passed reports whether the check passed.
func (r Result) Passed() bool { return r.Verdict == Passed }

// Retryable reports whether a re-check of the same token may still come
// out differently: the verifier could not decide for a passing reason.
// A misconfiguration (ReasonConfig) is not retried: it would fail again.
func (r Result) Retryable() bool {
	return r.Verdict == Unverified && r.Reason != ReasonConfig
}

// String gives the verdict and its reason, such as "failed(hostname)".
func (r Result) String() string {
	if r.Reason == "" {
		return r.Verdict.String()
	}
	return r.Verdict.String() + "(" + string(r.Reason) + ")"
}

func passed() Result               { return Result{Verdict: Passed} }
func failed(why Reason) Result     { return Result{Verdict: Failed, Reason: why} }
func unverified(why Reason) Result { return Result{Verdict: Unverified, Reason: why} }
