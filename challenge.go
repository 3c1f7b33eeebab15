package mailslot

import "time"

// Challenge verdicts a stored sign-up can carry (Lead.Challenge and
// ChallengeVerdict.Verdict): the names internal/challenge gives them. A
// sign-up whose property has no challenge carries none.
const (
	ChallengePassed     = "passed"
	ChallengeUnverified = "unverified"
	ChallengeFailed     = "failed"
)

// ChallengeVerdict is a later check of a sign-up that was stored
// unverified (the verifier was unreachable at the time): it sets the
// verdict of that sign-up's consent record in Postgres. The address is in
// the row's email_hmac column only; the token is never stored.
type ChallengeVerdict struct {
	// Submission is the id of the sign-up's outbox row (its consent
	// record's submission_id).
	Submission string    `json:"submission"`
	Property   string    `json:"property"`
	Verdict    string    `json:"verdict"`
	CheckedAt  time.Time `json:"checked_at"`
}
