package drain

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// Bot-challenge verdicts in Postgres. A sign-up's verdict (Lead.Challenge)
// goes to its consent record, and the lead keeps a summary: passed once
// any of its sign-ups passed, else unverified. A re-check's verdict row
// (mailslot.ChallengeVerdict) changes an unverified consent record to
// passed or failed, and a pass lifts its lead. Mail is sent to a sign-up
// only when its consent record's verdict is NULL or passed.
const (
	// setChallengeVerdictsSQL runs after upsertLeadsSQL in the same batch,
	// on the consent records that statement wrote.
	setChallengeVerdictsSQL = `
WITH s AS (
    SELECT * FROM unnest($1::uuid[], $2::text[]) AS s (id, verdict)
), c AS (
    UPDATE mailslot.consent_records c SET challenge_verdict = s.verdict, challenge_checked_at = c.recorded_at
    FROM s WHERE c.submission_id = s.id
    RETURNING c.lead_id, s.verdict
), a AS (
    SELECT lead_id, bool_or(verdict = 'passed') AS passed FROM c WHERE lead_id IS NOT NULL GROUP BY lead_id
)
UPDATE mailslot.leads l
SET challenge_verdict = CASE WHEN l.challenge_verdict = 'passed' OR a.passed THEN 'passed' ELSE 'unverified' END
FROM a WHERE l.id = a.lead_id`

	// recheckVerdictSQL applies a re-check: only to a consent record still
	// unverified (a replayed row changes nothing twice).
	recheckVerdictSQL = `
WITH c AS (
    UPDATE mailslot.consent_records SET challenge_verdict = $2, challenge_checked_at = $3
    WHERE submission_id = $1 AND challenge_verdict = 'unverified'
    RETURNING lead_id
)
UPDATE mailslot.leads l SET challenge_verdict = 'passed'
FROM c WHERE l.id = c.lead_id AND $2 = 'passed'`
)

// verdictRow is a re-check's verdict.
type verdictRow struct {
	row outbox.Row
	v   mailslot.ChallengeVerdict
}

// decodeVerdict parses a challenge row's payload.
func decodeVerdict(r outbox.Row) (verdictRow, bool) {
	var v mailslot.ChallengeVerdict
	if err := json.Unmarshal(r.Payload, &v); err != nil || v.Submission == "" || v.Property == "" ||
		(v.Verdict != mailslot.ChallengePassed && v.Verdict != mailslot.ChallengeFailed) {
		return verdictRow{}, false
	}
	return verdictRow{row: r, v: v}, true
}

// queueChallengeVerdicts sets the verdicts of a segment's sign-ups.
func queueChallengeVerdicts(b *pgx.Batch, leads []leadRow) {
	var ids, verdicts []string
	for _, l := range leads {
		if l.p.Challenge == mailslot.ChallengePassed || l.p.Challenge == mailslot.ChallengeUnverified {
			ids, verdicts = append(ids, l.row.ID), append(verdicts, l.p.Challenge)
		}
	}
	if len(ids) > 0 {
		b.Queue(setChallengeVerdictsSQL, ids, verdicts)
	}
}

// queueVerdict applies one re-check.
func queueVerdict(b *pgx.Batch, v verdictRow) {
	at := v.v.CheckedAt
	if at.IsZero() {
		at = v.row.ReceivedAt
	}
	b.Queue(recheckVerdictSQL, v.v.Submission, v.v.Verdict, at.UTC().Truncate(time.Microsecond))
	if v.v.Verdict == mailslot.ChallengePassed {
		b.Queue(mailRecheckedSQL, MailConfirmationCap, v.v.Submission, v.v.Property)
	}
}
