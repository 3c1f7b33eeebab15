package drain

import (
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot"
)

// Mail jobs: the sync decides who is sent what, in the transaction that
// applies the sign-up or the consent change, so that a job exists exactly
// when its cause does; any edge's dispatcher (sync/mailer) sends it later,
// never in the request path.
//
// Who gets a confirmation request: a sign-up that asked for mail (express,
// or pending on a property with double opt-in, the default) whose address
// is not yet confirmed. A public form that sends mail can be turned on a
// stranger's inbox, so an address gets at most one request per day and
// MailConfirmationCap in all. An address that withdrew, was suppressed or
// was erased gets nothing, except that a new sign-up may bring it one
// request per 30 days: only a confirmed opt-in lifts a withdrawal, and this
// is the only way to ask for one. Such a job is marked after_withdrawal;
// the dispatcher checks the same rules again when it sends.
//
// A confirmation that applies queues a welcome if the property has welcome
// on (one per lead) and cancels queued confirmations; an unsubscribe
// cancels whatever is queued. Erasure deletes the lead, and its jobs with
// it (ON DELETE CASCADE).

// MailConfirmationCap is the most confirmation requests one address is
// ever sent for one property.
const MailConfirmationCap = 5

const (
	// mailConfirmationsSQL queues the confirmation requests of a batch's
	// sign-ups, one row per (property, address), after the lead upsert
	// ($2..$4 their properties, hashes and consents).
	// The upsert holds the lead's row lock to the end of the transaction,
	// so a concurrent batch with the same address sees this job before it
	// counts.
	mailConfirmationsSQL = mailConfirmationInsert + `
FROM unnest($2::text[], $3::bytea[], $4::text[]) AS s (property, email_hmac, consent)` + mailConfirmationRules

	// mailRecheckedSQL queues the confirmation request that a sign-up held
	// back as unverified by its bot challenge earns when a re-check passes
	// ($2 its submission id, $3 its property), by the same rules, once
	// recheckVerdictSQL has marked it passed.
	mailRecheckedSQL = mailConfirmationInsert + `
FROM (SELECT property, email_hmac, status FROM mailslot.consent_records
      WHERE submission_id = $2 AND property = $3 AND challenge_verdict = 'passed' AND email_hmac IS NOT NULL)
     AS s (property, email_hmac, consent)` + mailConfirmationRules

	mailConfirmationInsert = `
INSERT INTO mailslot.mail_jobs (lead_id, property, kind, after_withdrawal)
SELECT l.id, l.property, 'confirmation', b.since IS NOT NULL`

	// mailConfirmationRules decide, for sign-ups s, who is sent a request:
	// one that asked for mail, not yet confirmed (or blocked since), under
	// the lifetime cap $1 and the daily or, once blocked, monthly
	// throttle. Requests count unless they were cancelled or skipped
	// before they went out.
	mailConfirmationRules = `
JOIN mailslot.leads l ON l.property = s.property AND l.email_hmac = s.email_hmac
LEFT JOIN mailslot.properties p ON p.property = l.property
CROSS JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole: flattened, the call was copied
    -- into each of the conditions below and ran for each.
    SELECT mailslot.mail_blocked_since(l.property, l.email_hmac, l.withdrawn_at, l.confirmed_at) AS since OFFSET 0) b
CROSS JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE j.created_at > now() - interval '24 hours') AS day,
           count(*) FILTER (WHERE j.created_at > now() - interval '30 days') AS month
    FROM mailslot.mail_jobs j
    WHERE j.lead_id = l.id AND j.kind = 'confirmation' AND j.state NOT IN ('cancelled', 'skipped')) h
WHERE (s.consent = 'express' OR (s.consent = 'pending' AND coalesce(p.double_opt_in, true)))
  AND (l.confirmed_at IS NULL OR b.since IS NOT NULL)
  AND h.total < $1
  AND CASE WHEN b.since IS NULL THEN h.day = 0 ELSE h.month = 0 END
ORDER BY l.id`

	// mailConfirmedSQL runs after a confirmation applied: queued
	// confirmation requests have nothing left to ask, and a property with
	// welcome on greets the address, once per lead.
	mailConfirmedSQL = `
WITH cancelled AS (
    UPDATE mailslot.mail_jobs j
    SET state = 'cancelled', last_error = 'the address was confirmed', updated_at = now()
    FROM mailslot.leads l
    WHERE l.property = $1 AND l.email_hmac = $2 AND j.lead_id = l.id
      AND j.kind = 'confirmation' AND j.state = 'queued'
)
INSERT INTO mailslot.mail_jobs (lead_id, property, kind)
SELECT l.id, l.property, 'welcome'
FROM mailslot.leads l
JOIN mailslot.properties p ON p.property = l.property AND p.welcome
WHERE l.property = $1 AND l.email_hmac = $2
ON CONFLICT (lead_id) WHERE kind = 'welcome' DO NOTHING`

	// mailUnsubscribedSQL cancels what is queued for an address that
	// unsubscribed (a welcome, or a confirmation request).
	mailUnsubscribedSQL = `
UPDATE mailslot.mail_jobs j
SET state = 'cancelled', last_error = 'the address unsubscribed', updated_at = now()
FROM mailslot.leads l
WHERE l.property = $1 AND l.email_hmac = $2 AND j.lead_id = l.id AND j.state = 'queued'`
)

// queueMailJobs queues the confirmation requests that a segment of
// sign-ups brings; it runs right after their lead upsert.
func queueMailJobs(b *pgx.Batch, leads []leadRow) {
	type key struct{ property, hmac string }
	asked := make(map[key]string, len(leads))
	var order []key
	for _, l := range leads {
		if l.p.Consent != mailslot.ConsentExpress && l.p.Consent != mailslot.ConsentPending {
			continue
		}
		if l.p.Challenge != "" && l.p.Challenge != mailslot.ChallengePassed {
			// Held back until a re-check of its bot challenge passes
			// (mailRecheckedSQL): a public form must not mail strangers.
			continue
		}
		k := key{l.p.Property, string(l.row.EmailHMAC)}
		prev, seen := asked[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || prev != mailslot.ConsentExpress {
			asked[k] = l.p.Consent
		}
	}
	if len(order) == 0 {
		return
	}
	props, consents := make([]string, len(order)), make([]string, len(order))
	hmacs := make([][]byte, len(order))
	for i, k := range order {
		props[i], hmacs[i], consents[i] = k.property, []byte(k.hmac), asked[k]
	}
	b.Queue(mailConfirmationsSQL, MailConfirmationCap, props, hmacs, consents)
}

// queueMailControl queues what a consent change means for mail; it runs
// right after the change's own statements.
func queueMailControl(b *pgx.Batch, c controlRow) {
	if c.consent == nil {
		return // an erasure deletes the lead's jobs with the lead
	}
	switch c.consent.Action {
	case mailslot.ActionConfirm:
		b.Queue(mailConfirmedSQL, c.consent.Property, c.row.EmailHMAC)
	case mailslot.ActionUnsubscribe:
		b.Queue(mailUnsubscribedSQL, c.consent.Property, c.row.EmailHMAC)
	}
}
