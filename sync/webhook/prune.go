package webhook

import (
	"context"
	"fmt"
	"time"
)

// Retention defaults.
const (
	// DefaultRetention is how long a delivered (or cancelled) delivery is
	// kept before Prune may delete it.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultPruneInterval is how often a Deliverer prunes.
	DefaultPruneInterval = time.Hour
	// DefaultPruneBatch bounds the deliveries one Prune deletes, so that
	// a first prune of a long backlog does not hold a round for long.
	DefaultPruneBatch = 10000
)

// pruneSQL deletes up to $2 finished deliveries older than $1, so that
// what the status counts scan (DeliveryCounts, on every scrape) stays
// bounded by the live leads rather than growing with every event ever
// sent. It keeps:
//
//   - every lead.erased delivery: it is the erasure record
//     (webhook_erasure_deliveries);
//   - per subscription and lead, the newest delivery: it is what tells an
//     erasure that the receiver was sent (or was due) something about the
//     lead, and so must hear of its erasure;
//   - a delivery cancelled while in flight, until its deliverer reports.
const pruneSQL = `
DELETE FROM mailslot.webhook_deliveries
WHERE id IN (
    SELECT d.id FROM mailslot.webhook_deliveries d
    JOIN mailslot.webhook_events e ON e.id = d.event_id
    WHERE d.state IN ('delivered', 'cancelled') AND d.lease_until IS NULL
      AND COALESCE(d.delivered_at, d.last_attempt_at, d.created_at) < now() - $1::interval
      AND e.type <> 'lead.erased'
      AND EXISTS (SELECT 1 FROM mailslot.webhook_deliveries n
                  WHERE n.lead_public_id = d.lead_public_id AND n.subscription_id = d.subscription_id
                    AND n.event_seq > d.event_seq)
    LIMIT $2)`

// Prune deletes up to limit (DefaultPruneBatch when not positive)
// delivered or cancelled deliveries finished more than retention ago
// (DefaultRetention when not positive), keeping what the erasure record
// and erasure's fan-out need (see pruneSQL), and returns how many it
// deleted. Events are kept: an export lists them. A Deliverer calls it
// every PruneInterval.
func Prune(ctx context.Context, db DB, retention time.Duration, limit int) (int64, error) {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if limit <= 0 {
		limit = DefaultPruneBatch
	}
	tag, err := db.Exec(ctx, pruneSQL, retention, limit)
	if err != nil {
		return 0, fmt.Errorf("prune webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}
