package drain

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/sync/webhook"
)

// Erasure and consent changes, and their ordering against sign-ups.
//
// A batch takes a transaction-level advisory lock per address it touches:
// exclusive for an address it erases, confirms or unsubscribes, shared for
// the others, in key order so that two batches cannot deadlock. A batch
// that erases an address thus waits for every in-flight batch holding a
// sign-up of it, and any batch that starts later sees the tombstone and
// drops what it covers. That is what keeps a row captured before an
// erasure, on an edge that was offline, from coming back when it finally
// syncs. Consent changes lock the same way, so that an unsubscribe and a
// sign-up of one address in two concurrent batches (two edges, or one
// edge's batches in flight together) never miss each other: the later
// transaction sees the earlier one's lead or suppression.
//
// Events carry no address, only the sign-up they name; a batch with such
// events holds the tombstone lock shared, so that an erasure (which takes
// it exclusively) and an event naming the erased sign-up are never in
// flight together either: whichever commits second scrubs or is scrubbed.

const (
	lockSQL = `
SELECT count(*) FROM (
    SELECT CASE WHEN t.x THEN pg_advisory_xact_lock(t.k) ELSE pg_advisory_xact_lock_shared(t.k) END
    FROM (SELECT k, bool_or(x) AS x FROM unnest($1::bigint[], $2::bool[]) AS u (k, x) GROUP BY k ORDER BY k) t
) l`

	// tombstoneOrderSQL serializes the transactions that write tombstones,
	// so that tombstone ids become visible in id order. Edges pull
	// tombstones by id (a cursor): were a lower id to commit after a higher
	// one that an edge had already pulled, that edge would never see it and
	// never scrub the address. The lock is taken before any address lock
	// (the two-key space never meets lockSQL's one-key space) and held to
	// the end of the transaction; only batches that erase take it.
	tombstoneOrderSQL = `SELECT pg_advisory_xact_lock(1835100524, 1)` // 1835100524 is "mail"

	// eventLinksSQL is the same lock, shared, for batches whose events
	// name a sign-up (see the package's ordering notes above).
	eventLinksSQL = `SELECT pg_advisory_xact_lock_shared(1835100524, 1)`

	tombstonesSQL = `
SELECT email_hmac, max(erased_at) FROM mailslot.tombstones
WHERE email_hmac = ANY($1::bytea[]) GROUP BY email_hmac`

	consentRecordSQL = `
INSERT INTO mailslot.consent_records (
    lead_id, submission_id, email_hmac, property, status, source, recorded_at, ip_hmac, origin_node, origin_seq,
    token_issued_at)
VALUES ((SELECT id FROM mailslot.leads WHERE property = $4 AND email_hmac = $3),
        $2, $3, $4, $5, $6, $7, $8, $1, $9, $10)`

	// confirmSQL applies a confirmation through the signed link: the only
	// consent that overturns a withdrawal, and only when its link ($4, the
	// token's issue time) was minted after the lead's latest withdrawal. A
	// link minted before an unsubscribe or an erasure and used after it is
	// recorded (consentRecordSQL) and changes nothing; so is one from an
	// edge that does not send the issue time, when the lead is withdrawn.
	// The generated consent_status checks the same against withdrawals
	// that arrive later (pgschema 006).
	confirmSQL = `
UPDATE mailslot.leads SET
    consent_basis     = 'express',
    express_at        = GREATEST(express_at, $3),
    confirmed_at      = GREATEST(confirmed_at, $3),
    confirm_issued_at = GREATEST(confirm_issued_at, $4)
WHERE property = $1 AND email_hmac = $2
  AND (withdrawn_at IS NULL OR $4::timestamptz > withdrawn_at)`

	unsubscribeSQL = `
UPDATE mailslot.leads SET withdrawn_at = GREATEST(withdrawn_at, $3)
WHERE property = $1 AND email_hmac = $2`

	suppressSQL = `
INSERT INTO mailslot.suppressions (email_hmac, property, reason, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (email_hmac, property) DO UPDATE SET
    reason     = CASE WHEN suppressions.reason = 'erased' THEN 'erased' ELSE EXCLUDED.reason END,
    created_at = GREATEST(suppressions.created_at, EXCLUDED.created_at)`

	tombstoneSQL = `
INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by, origin_node)
VALUES ($1, $2, $3, $4)`

	// Events keep the event, not the person: the link to the lead, the
	// sign-up it named and the IP hash go.
	eraseEventsSQL = `
UPDATE mailslot.events SET lead_id = NULL, lead_submission = NULL, ip_hmac = NULL
WHERE received_at <= $2
  AND (lead_id IN (SELECT id FROM mailslot.leads WHERE email_hmac = $1)
       OR lead_submission IN (SELECT submission_id FROM mailslot.consent_records WHERE email_hmac = $1))`

	// Consent records stay as proof that consent was given and withdrawn,
	// but no longer say whose: not even through lead_id, since a lead with
	// sign-ups from after the erasure survives (resetLeadsSQL).
	eraseConsentSQL = `
UPDATE mailslot.consent_records SET email_hmac = NULL, ip_hmac = NULL, lead_id = NULL
WHERE email_hmac = $1 AND recorded_at <= $2`

	// erasedLeadsSQL keeps a sign-up that a tombstone covers the way an
	// erasure leaves one that synced before it: a consent record that says
	// what was agreed and when, but not whose. Events that name the sign-up,
	// in this batch or a later one, find it and drop the link and the IP
	// hash (insertEventsSQL), as they would had they synced before the
	// erasure.
	erasedLeadsSQL = `
INSERT INTO mailslot.consent_records (
    lead_id, submission_id, email_hmac, property, policy_version, status, source,
    recorded_at, ip_hmac, origin_node, origin_seq)
SELECT NULL, s.id, NULL, s.property, s.policy_version, s.status, s.source, s.recorded_at, NULL, $1, s.seq
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::bigint[])
     AS s (id, property, policy_version, status, source, recorded_at, seq)`

	// eraseEventPropsSQL scrubs the address from event payloads, wherever
	// it sits inside them and however it is wrapped or encoded
	// (mailslot.address_pattern). Events carry no address column, so the
	// address comes from the leads about to be erased: one bound hash, so
	// the statement does not grow with the data (it reads every event up to
	// the erasure time once).
	eraseEventPropsSQL = `
UPDATE mailslot.events e SET payload = regexp_replace(e.payload::text, p.re, '[email]', 'gi')::jsonb
FROM (SELECT DISTINCT mailslot.address_pattern(email) AS re FROM mailslot.leads WHERE email_hmac = $1) p
WHERE e.received_at <= $2 AND e.payload::text ~* p.re`

	// A lead that is reset rather than deleted (resetLeadsSQL) keeps its
	// row, so its image jobs (URL, caption, face count) would survive the
	// cascade that takes a deleted lead's: they are deleted here, those of
	// the sign-ups after the erasure time with them, since a job does not
	// say which sign-up brought its image. Predictions and uploads go by
	// their cascades; the spend ledger keeps only amounts.
	eraseResetImagesSQL = `
DELETE FROM mailslot.image_jobs
WHERE lead_id IN (SELECT id FROM mailslot.leads WHERE email_hmac = $1 AND last_seen_at > $2)`

	// The lead goes; its consent records and events are set null by their
	// foreign keys, and its image jobs are deleted by theirs.
	eraseLeadsSQL = `DELETE FROM mailslot.leads WHERE email_hmac = $1 AND last_seen_at <= $2`

	// A lead that also has sign-ups from after the erasure (delivered
	// before the erasure reached Postgres) keeps only what those say.
	resetLeadsSQL = `
UPDATE mailslot.leads l SET
    name           = NULL,
    name_at        = NULL,
    first_seen_at  = last_seen_at,
    first_utm      = last_utm,
    first_page     = last_page,
    first_referrer = last_referrer,
    express_at     = CASE WHEN express_at > $2 THEN express_at END,
    implied_at     = CASE WHEN implied_at > $2 THEN implied_at END,
    withdrawn_at   = GREATEST(withdrawn_at, $2),
    confirmed_at      = CASE WHEN confirmed_at > $2 THEN confirmed_at END,
    confirm_issued_at = CASE WHEN confirmed_at > $2 THEN confirm_issued_at END,
    consent_basis  = CASE WHEN express_at > $2 THEN 'express' WHEN implied_at > $2 THEN 'implied' ELSE 'pending' END,
    submissions    = (SELECT count(*) FROM mailslot.consent_records c WHERE c.lead_id = l.id AND c.recorded_at > $2)
WHERE email_hmac = $1 AND last_seen_at > $2`
)

// lockKey maps an address hash to an advisory lock key.
func lockKey(h []byte) int64 {
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// lockAddresses takes the batch's address locks and returns, for each
// address it holds rows of, the latest erasure time Postgres knows. A batch
// that erases takes the tombstone lock first (see tombstoneOrderSQL).
func lockAddresses(ctx context.Context, tx pgx.Tx, d decoded, skip map[int64]bool) (map[string]time.Time, error) {
	var keys []int64
	var excl []bool
	var hashes [][]byte
	erases := false
	seen := map[string]bool{}
	for _, r := range d.all {
		if skip[r.Seq] || len(r.EmailHMAC) < 8 {
			continue
		}
		keys = append(keys, lockKey(r.EmailHMAC))
		excl = append(excl, r.Kind == mailslot.KindErasure || r.Kind == mailslot.KindConsent)
		erases = erases || r.Kind == mailslot.KindErasure
		if !seen[string(r.EmailHMAC)] {
			seen[string(r.EmailHMAC)] = true
			hashes = append(hashes, r.EmailHMAC)
		}
	}
	links := false
	for _, e := range d.events {
		if !skip[e.row.Seq] && e.ev.SubmissionID != "" {
			links = true
			break
		}
	}
	out := map[string]time.Time{}
	if len(keys) == 0 && !links {
		return out, nil
	}
	b := &pgx.Batch{}
	switch {
	case erases:
		b.Queue(tombstoneOrderSQL)
	case links:
		b.Queue(eventLinksSQL)
	}
	if len(keys) == 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("lock out erasures: %w", err)
		}
		return out, nil
	}
	sort.Slice(hashes, func(i, j int) bool { return string(hashes[i]) < string(hashes[j]) })
	b.Queue(lockSQL, keys, excl)
	b.Queue(tombstonesSQL, hashes).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var h []byte
			var t time.Time
			if err := rows.Scan(&h, &t); err != nil {
				return err
			}
			out[string(h)] = t
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock addresses and read tombstones: %w", err)
	}
	return out, nil
}

// queueControl queues a consent change's or an erasure's statements.
func queueControl(b *pgx.Batch, nodeID string, c controlRow) {
	r := c.row
	if e := c.erasure; e != nil {
		at := e.RequestedAt
		if at.IsZero() {
			at = r.ReceivedAt
		}
		queueErasure(b, r.EmailHMAC, at, orDefault(e.RequestedBy, "admin"), nodeID)
		return
	}
	ch := c.consent
	var issued *time.Time
	if !ch.TokenIssuedAt.IsZero() {
		issued = &ch.TokenIssuedAt
	}
	b.Queue(consentRecordSQL, nodeID, r.ID, r.EmailHMAC, ch.Property, ch.Status, optional(ch.Source),
		r.ReceivedAt, r.IPHMAC, r.Seq, issued)
	switch ch.Action {
	case mailslot.ActionConfirm:
		b.Queue(confirmSQL, ch.Property, r.EmailHMAC, r.ReceivedAt, issued)
		queueConsentEvent(b, webhook.LeadConfirmed, ch.Property, ch.Source, r.EmailHMAC, r.ReceivedAt)
	case mailslot.ActionUnsubscribe:
		b.Queue(unsubscribeSQL, ch.Property, r.EmailHMAC, r.ReceivedAt)
		b.Queue(suppressSQL, r.EmailHMAC, ch.Property, "unsubscribed", r.ReceivedAt)
		queueConsentEvent(b, webhook.LeadUnsubscribed, ch.Property, ch.Source, r.EmailHMAC, r.ReceivedAt)
	}
}

// queueErasedLeads records sign-ups that a tombstone covers as scrubbed
// consent records (erasedLeadsSQL).
func queueErasedLeads(b *pgx.Batch, nodeID string, leads []leadRow) {
	n := len(leads)
	var (
		ids, props, statuses = make([]string, n), make([]string, n), make([]string, n)
		policies, sources    = make([]*string, n), make([]*string, n)
		recorded             = make([]time.Time, n)
		seqs                 = make([]int64, n)
	)
	for i, l := range leads {
		ids[i], props[i], statuses[i] = l.row.ID, l.p.Property, l.p.Consent
		policies[i], sources[i] = optional(l.p.ConsentRecord.PolicyVersion), optional(l.p.ConsentRecord.Source)
		recorded[i], seqs[i] = l.row.ReceivedAt, l.row.Seq
	}
	b.Queue(erasedLeadsSQL, nodeID, ids, props, policies, statuses, sources, recorded, seqs)
}

func queueErasure(b *pgx.Batch, emailHMAC []byte, at time.Time, by, origin string) {
	var node any
	if origin != "" {
		node = origin
	}
	b.Queue(tombstoneSQL, emailHMAC, at, by, node)
	queueWebhookErasure(b, emailHMAC)
	b.Queue(suppressSQL, emailHMAC, "", "erased", at)
	b.Queue(eraseEventsSQL, emailHMAC, at)
	b.Queue(eraseEventPropsSQL, emailHMAC, at)
	b.Queue(eraseConsentSQL, emailHMAC, at)
	b.Queue(eraseResetImagesSQL, emailHMAC, at)
	b.Queue(eraseLeadsSQL, emailHMAC, at)
	b.Queue(resetLeadsSQL, emailHMAC, at)
	queueResetLeadsCreated(b, emailHMAC)
}

// EraseResult counts what an erasure removed from Postgres.
type EraseResult struct {
	LeadsDeleted    int64 `json:"leads_deleted"`
	LeadsReset      int64 `json:"leads_reset"`
	ConsentScrubbed int64 `json:"consent_records_scrubbed"`
	EventsScrubbed  int64 `json:"events_scrubbed"`
	// EventPayloadsScrubbed counts events whose payload held the address.
	EventPayloadsScrubbed int64 `json:"event_payloads_scrubbed"`
	// ImageJobsDeleted counts the image jobs of reset leads; a deleted
	// lead's go by cascade and are not counted.
	ImageJobsDeleted int64 `json:"image_jobs_deleted"`
}

// Erase erases an address in Postgres directly, as of at, with the same
// statements and lock a synced erasure request uses; edges learn it from
// the tombstone. It is what `mailslotctl erase` runs.
func Erase(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, emailHMAC []byte, at time.Time, by string) (EraseResult, error) {
	var res EraseResult
	tx, err := db.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("begin erasure: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	b := &pgx.Batch{}
	b.Queue(tombstoneOrderSQL)
	b.Queue(lockSQL, []int64{lockKey(emailHMAC)}, []bool{true})
	queueErasure(b, emailHMAC, at, by, "")
	counts := map[string]*int64{eraseEventsSQL: &res.EventsScrubbed, eraseEventPropsSQL: &res.EventPayloadsScrubbed,
		eraseConsentSQL: &res.ConsentScrubbed, eraseResetImagesSQL: &res.ImageJobsDeleted,
		eraseLeadsSQL: &res.LeadsDeleted, resetLeadsSQL: &res.LeadsReset}
	for _, qq := range b.QueuedQueries {
		if dst := counts[qq.SQL]; dst != nil {
			qq.Exec(func(ct pgconn.CommandTag) error { *dst = ct.RowsAffected(); return nil })
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return res, fmt.Errorf("erase address: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit erasure: %w", err)
	}
	return res, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
