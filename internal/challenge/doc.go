// Package challenge decides whether a sign-up on a public form came from a
// person: it verifies Cloudflare Turnstile and hCaptcha tokens with their
// siteverify APIs, and issues and verifies self-hosted proof-of-work
// challenges in ALTCHA's open protocol (v1), which need no third party.
//
// Every check ends in a Verdict: passed, failed (with a Reason),
// unverified or replayed. Unverified means the verifier could not decide
// (it was unreachable, slow, answered 5xx or garbage, or mailslot itself is
// misconfigured). The edge still accepts such a sign-up and stores it
// unverified: a verifier being down must not lose sign-ups, and an
// unverified sign-up gets no mail unless a later check passes.
//
// # Re-checking
//
// When the verifier cannot be reached, the sign-up is accepted and stored
// unverified; retry within the token's lifetime (TurnstileTokenLifetime,
// 300 s; HCaptchaTokenLifetime, about 120 s; a proof-of-work payload
// carries its own expiry). Recheck is Verify with the same Expect, so the
// retry carries the same idempotency key: Turnstile then answers a
// repeated request for an already consumed token with the first answer
// instead of timeout-or-duplicate. hCaptcha has no idempotency key: if its
// first answer was lost after hCaptcha consumed the token, the re-check is
// refused as already seen, and the sign-up stays unverified.
//
// # No client IP
//
// Both siteverify APIs accept the visitor's IP (remoteip) as an extra
// signal. mailslot does not send it: the edge hashes IPs at its boundary
// (HMAC with the pepper) and nothing past it sees the raw address, and
// neither API accepts a hash. Both treat remoteip as optional.
//
// # Secrets and tokens
//
// Secrets are held as Secret, which prints as "[redacted]"; the verifiers
// print only their kind and hostnames. No Result, error or log line
// carries a secret, a token or a payload: results carry stable reason codes
// and the provider's documented error codes only.
//
// # Proof of work
//
// PoW signs each challenge with HMAC-SHA256 and binds it to a property and
// an expiry in the salt's parameters ("<hex>?expires=<unix>&property=<p>&").
// A solved challenge is accepted once: a bounded replay store remembers
// solutions until their challenge expires. When the store is full the
// verifier fails closed: the solution is not passed (passing it unrecorded
// would let it be replayed) but reported unverified with ReasonStoreFull,
// so the sign-up is kept, gets no mail, and a re-check passes once
// expired entries have made room.
package challenge
