package webhook

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// EraseResult counts what an erasure changed in the webhook tables.
type EraseResult struct {
	// EventsScrubbed is how many stored events of the erased leads had
	// their payloads cut down to the public id and property.
	EventsScrubbed int64 `json:"webhook_events_scrubbed"`
	// DeliveriesCancelled is how many of their deliveries had not been
	// delivered and never will be.
	DeliveriesCancelled int64 `json:"webhook_deliveries_cancelled"`
	// ErasuresQueued is how many lead.erased deliveries were queued (or
	// recorded as cancelled, for a disabled subscription).
	ErasuresQueued int64 `json:"webhook_erasures_queued"`
}

// eraseSQL does, for every lead of the address ($1), in one statement:
//
//   - scrub: every stored event of the lead, delivered or not, keeps only
//     the public id and property;
//   - an event not yet fanned out gets its deliveries here, cancelled:
//     the record says which receivers were due it;
//   - cancel: every delivery not yet delivered is cancelled, so that the
//     address is never sent after the erasure. One in flight keeps its
//     lease until its deliverer reports, so that lead.erased waits for it
//     (the claim's order check);
//   - queue lead.erased to every subscription that was sent or was due
//     anything about the lead, and to every enabled subscription that asks
//     for lead.erased of its property. A disabled subscription's delivery
//     is recorded as cancelled: the record says it could not be told;
//   - a lead that survives the erasure (it has sign-ups from after it; the
//     sync resets it) gets a new public id, so that what it becomes cannot
//     be linked to what the receivers were told to erase.
//
// The tombstone is the address's latest, which the same transaction wrote
// just before (its order lock is held); with none, tombstone_id is NULL and
// erased_at is now.
const eraseSQL = `
WITH tomb AS (
    SELECT (SELECT id FROM mailslot.tombstones WHERE email_hmac = $1 ORDER BY id DESC LIMIT 1) AS id,
           COALESCE((SELECT erased_at FROM mailslot.tombstones WHERE email_hmac = $1 ORDER BY id DESC LIMIT 1), now()) AS erased_at
), erased AS (
    SELECT l.id AS lead_id, l.public_id, l.property, l.last_seen_at > tomb.erased_at AS survives
    FROM mailslot.leads l, tomb WHERE l.email_hmac = $1
), scrub AS (
    UPDATE mailslot.webhook_events e
    SET payload = jsonb_build_object('id', e.lead_public_id, 'property', e.property), scrubbed_at = now(),
        fanned_at = COALESCE(e.fanned_at, now())
    FROM erased WHERE e.lead_public_id = erased.public_id AND e.scrubbed_at IS NULL
    RETURNING e.id, e.seq, e.type, e.lead_public_id, e.property, old.fanned_at IS NULL AS unfanned
), unfanned AS (
    INSERT INTO mailslot.webhook_deliveries (subscription_id, event_id, lead_public_id, event_seq, state, last_error)
    SELECT s.id, x.id, x.lead_public_id, x.seq, 'cancelled', 'lead erased before delivery'
    FROM scrub x
    JOIN mailslot.webhook_subscriptions s
      ON s.disabled_at IS NULL AND x.type = ANY (s.events) AND (s.property IS NULL OR s.property = x.property)
    WHERE x.unfanned
    RETURNING subscription_id, lead_public_id
), cancel AS (
    UPDATE mailslot.webhook_deliveries d
    SET state = 'cancelled', last_error = 'lead erased before delivery',
        lease_until = CASE WHEN d.state = 'delivering' THEN d.lease_until END
    FROM erased WHERE d.lead_public_id = erased.public_id AND d.state IN ('pending', 'delivering', 'failed', 'dead')
    RETURNING 1
), targets AS (
    SELECT DISTINCT e.public_id, e.property, s.id AS subscription_id, s.disabled_at IS NOT NULL AS disabled
    FROM erased e
    JOIN mailslot.webhook_subscriptions s
      ON EXISTS (SELECT 1 FROM mailslot.webhook_deliveries d WHERE d.lead_public_id = e.public_id AND d.subscription_id = s.id)
      OR EXISTS (SELECT 1 FROM unfanned u WHERE u.lead_public_id = e.public_id AND u.subscription_id = s.id)
      OR (s.disabled_at IS NULL AND 'lead.erased' = ANY (s.events) AND (s.property IS NULL OR s.property = e.property))
), ev AS (
    INSERT INTO mailslot.webhook_events (id, type, lead_public_id, property, payload, tombstone_id, fanned_at)
    SELECT uuidv7(), 'lead.erased', e.public_id, e.property,
           jsonb_build_object('id', e.public_id, 'property', e.property,
               'erased_at', to_char(tomb.erased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
           tomb.id, now()
    FROM erased e, tomb
    WHERE EXISTS (SELECT 1 FROM targets t WHERE t.public_id = e.public_id)
    RETURNING id, seq, lead_public_id
), queued AS (
    INSERT INTO mailslot.webhook_deliveries (subscription_id, event_id, lead_public_id, event_seq, state, last_error)
    SELECT t.subscription_id, ev.id, ev.lead_public_id, ev.seq,
           CASE WHEN t.disabled THEN 'cancelled' ELSE 'pending' END,
           CASE WHEN t.disabled THEN 'subscription disabled' END
    FROM ev JOIN targets t ON t.public_id = ev.lead_public_id
    RETURNING 1
), renamed AS (
    UPDATE mailslot.leads l SET public_id = gen_random_uuid()
    FROM erased e WHERE l.id = e.lead_id AND e.survives
    RETURNING 1
)
SELECT (SELECT count(*) FROM scrub), (SELECT count(*) FROM cancel) + (SELECT count(*) FROM unfanned), (SELECT count(*) FROM queued),
       (SELECT count(*) FROM renamed)`

// QueueErase queues the webhook side of erasing an address (its HMAC) on
// b, the erasure's pipelined batch: queue it after the tombstone insert and
// before the statements that delete or reset the address's leads (it
// finds the leads by address). res, when not nil, receives the counts
// when the batch runs.
func QueueErase(b *pgx.Batch, emailHMAC []byte, res *EraseResult) {
	queueEraseLock(b)
	q := b.Queue(eraseSQL, emailHMAC)
	q.QueryRow(func(row pgx.Row) error {
		var r EraseResult
		var renamed int64
		if err := row.Scan(&r.EventsScrubbed, &r.DeliveriesCancelled, &r.ErasuresQueued, &renamed); err != nil {
			return fmt.Errorf("erase webhook events: %w", err)
		}
		if res != nil {
			*res = r
		}
		return nil
	})
}

// Querier runs statements in the erasure's transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EraseLead is QueueErase for a caller that runs statements one at a time
// in the erasure's transaction tx, with the same ordering rule: after the
// tombstone, before the leads go.
func EraseLead(ctx context.Context, tx Querier, emailHMAC []byte) (EraseResult, error) {
	var r EraseResult
	var renamed int64
	if _, err := tx.Exec(ctx, eraseLockSQL); err != nil {
		return r, fmt.Errorf("erase webhook events: wait for the fan-out: %w", err)
	}
	if err := tx.QueryRow(ctx, eraseSQL, emailHMAC).Scan(&r.EventsScrubbed, &r.DeliveriesCancelled, &r.ErasuresQueued, &renamed); err != nil {
		return r, fmt.Errorf("erase webhook events: %w", err)
	}
	return r, nil
}
