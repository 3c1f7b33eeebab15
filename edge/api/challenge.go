package api

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/outbox"
)

// Challenge error codes and field codes.
const (
	// fieldChallenge is the field a failed check is reported on.
	fieldChallenge = "challenge"
)

// Re-check limits: an unverified sign-up is checked again after each
// delay in turn, while its token lives.
var recheckDelays = []time.Duration{5 * time.Second, 15 * time.Second, 40 * time.Second, 90 * time.Second, 150 * time.Second}

// usedCapacity bounds the remembered passed tokens (see usedTokens).
const usedCapacity = 4096

// challenges is the Server's bot-challenge state.
type challenges struct {
	pol      *policy.Policy
	used     *usedTokens
	rechecks *Rechecker
}

func newChallenges(pol *policy.Policy, out *outbox.Outbox, log *slog.Logger, queue int) *challenges {
	if pol == nil {
		return nil
	}
	return &challenges{pol: pol, used: newUsedTokens(usedCapacity), rechecks: newRechecker(pol, out, log, queue)}
}

// challengeInfo is GET /v1/challenge's answer for a property without a
// proof of work: which widget its form uses, if any.
type challengeInfo struct {
	Kind    string `json:"kind"`
	SiteKey string `json:"site_key,omitempty"`
}

// powChallenge is GET /v1/challenge's answer for a proof of work: an
// ALTCHA challenge (its members are what the ALTCHA widget reads) and the
// kind, for mailslot.js.
type powChallenge struct {
	Kind string `json:"kind"`
	challenge.Challenge
}

// getChallenge issues a proof-of-work challenge for ?property=P, or says
// which widget the property uses. It is rate-limited like the write
// routes (issuing costs a random number and an HMAC, but a flood of
// challenges is a flood of future solutions) and never cached.
func (s *Server) getChallenge(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	ip := s.clientIP(c)
	now := s.now().UTC()
	if ok, wait := s.allow(ip, s.hash.IP(ip), now); !ok {
		c.Header("Retry-After", retryAfter(wait))
		abortError(c, mailslot.CodeRateLimited, nil)
		return
	}
	property := c.Query("property")
	if property == "" || len(property) > challenge.MaxPropertyLen || !printable(property) {
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"property": intake.FieldInvalid})
		return
	}
	var rule *policy.Rule
	if s.chal != nil {
		rule = s.chal.pol.For(property)
	}
	switch {
	case rule == nil:
		c.JSON(http.StatusOK, challengeInfo{Kind: challenge.KindNone.String()})
		return
	case rule.Kind != challenge.KindPoW:
		c.JSON(http.StatusOK, challengeInfo{Kind: rule.Kind.String(), SiteKey: rule.SiteKey})
		return
	case s.chal.pol.PoW() == nil:
		c.Header("Retry-After", "60")
		abortError(c, mailslot.CodeNoChallenge, nil)
		return
	}
	ch, err := s.chal.pol.PoW().Issue(property, now)
	if err != nil {
		s.internalError(c, "issue challenge", err)
		return
	}
	c.JSON(http.StatusOK, powChallenge{Kind: challenge.KindPoW.String(), Challenge: ch})
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func retryAfter(wait time.Duration) string {
	secs := int(wait / time.Second)
	if wait%time.Second != 0 {
		secs++
	}
	return strconv.Itoa(max(secs, 1))
}

// checked is the outcome of a sign-up's challenge, for storing it.
type checked struct {
	// verdict is what the lead carries: passed, unverified, or "" when
	// its property has no challenge.
	verdict string
	// recheck, when set, is queued once the sign-up is stored.
	recheck *recheck
}

// stamp adds the verdict to the lead's JSON as its last member (where
// json.Marshal puts Lead.Challenge). The idempotency hash is taken before,
// so a client's retry whose check came out differently (unverified, then
// passed) is still the same sign-up.
func (ch checked) stamp(leadJSON []byte) []byte {
	if ch.verdict == "" || len(leadJSON) < 2 {
		return leadJSON
	}
	out := make([]byte, 0, len(leadJSON)+32)
	out = append(out, leadJSON[:len(leadJSON)-1]...)
	out = append(out, `,"challenge":"`...)
	out = append(out, ch.verdict...)
	return append(out, `"}`...)
}

// checkChallenge runs the property's challenge for a decoded sign-up. It
// answers and returns false when the sign-up is refused: a failed or
// replayed token, a JSON sign-up without one, or a form without one on a
// property that refuses no-JS forms. Anything the visitor cannot be blamed
// for (the verifier unreachable, slow, 5xx; a proof of work without a key)
// lets the sign-up through unverified.
func (s *Server) checkChallenge(c *gin.Context, r request, req *intake.LeadRequest, idemKey string) (checked, bool) {
	if s.chal == nil {
		return checked{}, true
	}
	rule := s.chal.pol.For(req.Property)
	if rule == nil {
		return checked{}, true
	}
	count := func(v challenge.Verdict) { s.chal.pol.Count(req.Property, v) }
	token := tokenFor(rule.Kind, req.Tokens)
	if token == "" {
		if r.format == intake.FormatForm {
			// No JavaScript ran: no proof of work, no widget.
			if rule.NoJS == policy.Refuse {
				count(challenge.Failed)
				s.fail(c, r.format, mailslot.CodeChallengeRequired, nil)
				return checked{}, false
			}
			count(challenge.Unverified)
			return checked{verdict: mailslot.ChallengeUnverified}, true
		}
		count(challenge.Failed)
		s.fail(c, r.format, mailslot.CodeInvalidFields, map[string]string{fieldChallenge: intake.FieldRequired})
		return checked{}, false
	}
	if rule.Verifier == nil {
		count(challenge.Unverified)
		return checked{verdict: mailslot.ChallengeUnverified}, true
	}
	expect := challenge.Expect{Property: req.Property, Now: r.now}
	if rule.Kind == challenge.KindTurnstile {
		expect.IdempotencyKey = challenge.NewIdempotencyKey()
		if idemKey != "" {
			expect.IdempotencyKey = challenge.IdempotencyKeyFor(req.Property, idemKey)
		}
	}
	res := rule.Verifier.Verify(c.Request.Context(), token, expect)
	if !res.Passed() && res.Verdict != challenge.Unverified && s.chal.used.retry(token, req.Property, idemKey) {
		// The client's retry of a sign-up whose token passed here: the
		// provider (or the replay store) now refuses the spent token, but
		// it is the same sign-up; the outbox answers it as the first time.
		res = challenge.Result{Verdict: challenge.Passed}
	}
	count(res.Verdict)
	switch res.Verdict {
	case challenge.Passed:
		s.chal.used.remember(token, req.Property, idemKey)
		return checked{verdict: mailslot.ChallengePassed}, true
	case challenge.Unverified:
		ch := checked{verdict: mailslot.ChallengeUnverified}
		if res.Retryable() {
			ch.recheck = &recheck{rule: rule, token: token, expect: expect, received: r.now}
		}
		s.log.Info("challenge unverified; sign-up kept without mail", "property", req.Property, "kind", rule.Kind.String(), "reason", string(res.Reason))
		return ch, true
	}
	reason := string(res.Reason)
	if res.Verdict == challenge.Replayed {
		reason = challenge.Replayed.String()
	}
	if r.format == intake.FormatForm {
		q := url.Values{"error": {intake.CodeInvalidFields}, "field": {fieldChallenge}, "reason": {reason}}
		c.Redirect(http.StatusSeeOther, withQuery(s.set.ErrorURL, q))
		c.Abort()
		return checked{}, false
	}
	s.fail(c, r.format, mailslot.CodeInvalidFields, map[string]string{fieldChallenge: intake.FieldInvalid})
	return checked{}, false
}

// tokenFor picks the token of the property's kind; tokens of other kinds
// are ignored.
func tokenFor(k challenge.Kind, t intake.ChallengeTokens) string {
	switch k {
	case challenge.KindTurnstile:
		return t.Turnstile
	case challenge.KindHCaptcha:
		return t.HCaptcha
	case challenge.KindPoW:
		return t.Altcha
	}
	return ""
}

// stored is called once a sign-up with a challenge is in the outbox: an
// unverified one that may still pass is queued for a re-check.
func (s *Server) challengeStored(ch checked, id string, emailHMAC []byte, property string) {
	if s.chal == nil || ch.recheck == nil {
		return
	}
	rc := ch.recheck
	rc.submission, rc.property, rc.emailHMAC = id, property, emailHMAC
	s.chal.rechecks.enqueue(rc)
}

// usedTokens remembers, for a while and in bounded memory, which token
// passed for which sign-up (property and client idempotency key), so that
// a client's retry of that sign-up with the same token is not refused as a
// replay. Only a hash of the token is kept.
type usedTokens struct {
	mu   sync.Mutex
	keys map[[32]byte]struct{}
	ring [][32]byte
	next int
}

func newUsedTokens(n int) *usedTokens {
	return &usedTokens{keys: make(map[[32]byte]struct{}, n), ring: make([][32]byte, n)}
}

func usedKey(token, property, idemKey string) [32]byte {
	h := sha256.New()
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write([]byte(property))
	h.Write([]byte{0})
	h.Write([]byte(idemKey))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (u *usedTokens) remember(token, property, idemKey string) {
	if idemKey == "" {
		return // nothing can retry it as the same sign-up
	}
	k := usedKey(token, property, idemKey)
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.keys[k]; ok {
		return
	}
	delete(u.keys, u.ring[u.next])
	u.ring[u.next] = k
	u.keys[k] = struct{}{}
	u.next = (u.next + 1) % len(u.ring)
}

func (u *usedTokens) retry(token, property, idemKey string) bool {
	if idemKey == "" {
		return false
	}
	k := usedKey(token, property, idemKey)
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.keys[k]
	return ok
}

// recheck is an unverified sign-up waiting for another check.
type recheck struct {
	rule       *policy.Rule
	token      string
	expect     challenge.Expect
	received   time.Time
	submission string
	property   string
	emailHMAC  []byte
	attempt    int
	due        time.Time
}

// Rechecker checks unverified sign-ups again while their tokens live, and
// writes a decisive verdict (passed or failed) to the outbox as a
// challenge row, which the sync applies to the sign-up's consent record.
// Its queue is bounded and in memory: a sign-up dropped from it (queue
// full, edge restarted) simply stays unverified, and unverified gets no
// mail, so losing a re-check never sends mail that should not go.
type Rechecker struct {
	pol  *policy.Policy
	out  *outbox.Outbox
	log  *slog.Logger
	max  int
	wake chan struct{}

	mu      sync.Mutex
	q       recheckHeap
	dropped atomic.Uint64
}

func newRechecker(pol *policy.Policy, out *outbox.Outbox, log *slog.Logger, max int) *Rechecker {
	if max <= 0 {
		max = 1024
	}
	return &Rechecker{pol: pol, out: out, log: log, max: max, wake: make(chan struct{}, 1)}
}

// RecheckStatus is the re-check queue's state.
type RecheckStatus struct {
	Queued  int    `json:"queued"`
	Dropped uint64 `json:"dropped"`
}

// Status reports the queue.
func (rc *Rechecker) Status() RecheckStatus {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return RecheckStatus{Queued: len(rc.q), Dropped: rc.dropped.Load()}
}

func (rc *Rechecker) enqueue(r *recheck) {
	if r.attempt >= len(recheckDelays) {
		return
	}
	r.due = time.Now().Add(recheckDelays[r.attempt])
	rc.mu.Lock()
	if len(rc.q) >= rc.max {
		rc.mu.Unlock()
		if rc.dropped.Add(1) == 1 {
			rc.log.Warn("challenge re-check queue full: sign-ups stay unverified", "limit", rc.max)
		}
		return
	}
	heap.Push(&rc.q, r)
	rc.mu.Unlock()
	select {
	case rc.wake <- struct{}{}:
	default:
	}
}

// Run re-checks until ctx ends.
func (rc *Rechecker) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		rc.mu.Lock()
		var next *recheck
		wait := time.Hour
		if len(rc.q) > 0 {
			if d := time.Until(rc.q[0].due); d <= 0 {
				next = heap.Pop(&rc.q).(*recheck)
			} else {
				wait = d
			}
		}
		rc.mu.Unlock()
		if next != nil {
			rc.check(ctx, next)
			continue
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-rc.wake:
		case <-t.C:
		}
	}
}

func (rc *Rechecker) check(ctx context.Context, r *recheck) {
	expect := r.expect
	expect.Now = time.Now()
	res := challenge.Recheck(ctx, r.rule.Verifier, r.token, expect, r.received)
	if ctx.Err() != nil {
		return
	}
	if res.Verdict == challenge.Unverified {
		if res.Retryable() {
			r.attempt++
			rc.enqueue(r)
		}
		return
	}
	verdict := mailslot.ChallengeFailed
	if res.Passed() {
		verdict = mailslot.ChallengePassed
	}
	rc.pol.CountRecheck(r.property, res.Passed())
	payload, err := json.Marshal(mailslot.ChallengeVerdict{Submission: r.submission, Property: r.property, Verdict: verdict, CheckedAt: expect.Now.UTC()})
	if err != nil {
		rc.log.Error("encode challenge verdict", logging.KeyErr, err)
		return
	}
	_, err = rc.out.Submit(ctx, outbox.Submission{Records: []outbox.Record{{
		ID: uuid.Must(uuid.NewV7()).String(), Kind: mailslot.KindChallenge, ReceivedAt: expect.Now.UTC(),
		Payload: payload, EmailHMAC: r.emailHMAC,
	}}})
	if err != nil && !errors.Is(err, context.Canceled) {
		rc.log.Warn("store challenge verdict; the sign-up stays unverified", "property", r.property, logging.KeyErr, err)
	}
}

// recheckHeap orders re-checks by when they are due.
type recheckHeap []*recheck

func (h recheckHeap) Len() int           { return len(h) }
func (h recheckHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h recheckHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recheckHeap) Push(x any)        { *h = append(*h, x.(*recheck)) }
func (h *recheckHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// Rechecker returns the re-check worker for the node to run, nil when the
// edge has no challenges.
func (s *Server) Rechecker() *Rechecker {
	if s.chal == nil {
		return nil
	}
	return s.chal.rechecks
}
