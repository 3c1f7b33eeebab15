package webhook

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The advisory lock (1835100524, 2) makes fan-outs take turns and lets an
// erasure wait for the one in progress (1835100524 is "mail"; the sync's
// tombstone order lock is ("mail", 1)).

// DefaultFanOut bounds the events one fan-out reads.
const DefaultFanOut = 1024

// fanOutSQL writes the deliveries of up to $1 events that no fan-out has
// seen, oldest first: one per enabled subscription whose types and
// property match, as of now. Only one runs at a time (a deliverer that
// does not get the lock skips its turn), so every lead's deliveries are
// written in the order of its events, which the claim's order check
// relies on. An erasure holds the lock shared (QueueErase), so that its
// statement sees every delivery a fan-out wrote, and the fan-out never
// sees an event the erasure is about to scrub as unfanned: the erasure
// fans such events out itself, as cancelled deliveries. Disabling a
// subscription (Remove, a 410) holds it shared too, so that its cancel
// sees every delivery written to the subscription.
const fanOutSQL = `
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(1835100524, 2) AS ok
), ev AS (
    UPDATE mailslot.webhook_events e SET fanned_at = now()
    WHERE e.id IN (
        SELECT x.id FROM mailslot.webhook_events x, turn
        WHERE turn.ok AND x.fanned_at IS NULL
        ORDER BY x.seq LIMIT $1
        FOR UPDATE OF x SKIP LOCKED)
      AND e.fanned_at IS NULL
    RETURNING e.id, e.seq, e.type, e.lead_public_id, e.property
)
INSERT INTO mailslot.webhook_deliveries (subscription_id, event_id, lead_public_id, event_seq)
SELECT s.id, ev.id, ev.lead_public_id, ev.seq
FROM ev
JOIN mailslot.webhook_subscriptions s
  ON s.disabled_at IS NULL AND ev.type = ANY (s.events) AND (s.property IS NULL OR s.property = ev.property)
ORDER BY ev.seq
ON CONFLICT (event_id, subscription_id) DO NOTHING`

// eraseLockSQL takes the fan-out lock shared for the rest of the
// erasure's (or the disable's) transaction (see fanOutSQL).
const eraseLockSQL = `SELECT pg_advisory_xact_lock_shared(1835100524, 2)`

// FanOut writes the deliveries of up to limit (DefaultFanOut when not
// positive) events not yet fanned out, and returns how many it wrote. The
// Deliverer calls it at the start of every round; it is exported for
// tools and tests that look at deliveries without running one. Another
// fan-out in progress makes it return 0 at once.
func FanOut(ctx context.Context, db DB, limit int) (int64, error) {
	if limit <= 0 {
		limit = DefaultFanOut
	}
	// One pipeline, so one implicit transaction: the expansion takes the
	// fan-out's lock (or finds it taken and does nothing), and every
	// lead.created it expands has its deliveries before the fan-out writes
	// those of the leads' later events.
	b := &pgx.Batch{}
	b.Queue(expandCreatedSQL, expandRecords)
	b.Queue(fanOutSQL, limit)
	br := db.SendBatch(ctx, b)
	expanded, err := br.Exec()
	if err != nil {
		_ = br.Close()
		return 0, fmt.Errorf("expand lead.created records: %w", err)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("fan out webhook events: %w", err)
	}
	return expanded.RowsAffected() + tag.RowsAffected(), nil
}

// expandRecords bounds the sync batches' lead.created records one fan-out
// expands: a record names up to a sync batch of leads (1,000 by default).
const expandRecords = 4

// queueEraseLock queues eraseLockSQL on an erasure's batch.
func queueEraseLock(b *pgx.Batch) {
	b.Queue(eraseLockSQL)
}
