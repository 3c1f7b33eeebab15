package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailslot/mailslot/sync/webhook"
)

// TestPruneKeepsWhatErasureNeeds: pruning deletes finished deliveries past
// the retention, but keeps the newest per subscription and lead (so a
// later erasure still tells a receiver that was sent the lead), recent
// ones, and undelivered ones.
func TestPruneKeepsWhatErasureNeeds(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	// No lead.erased in its types: it hears of an erasure only because it
	// was sent the lead.
	sub := addSub(t, pool, "http://127.0.0.1:1/a", "", webhook.LeadCreated, webhook.LeadConfirmed, webhook.LeadUnsubscribed)
	ann := insertLead(t, pool, "site.example", "ann@example.com")
	bob := insertLead(t, pool, "site.example", "bob@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ann.PublicID})
	emit(t, pool, webhook.Event{Type: webhook.LeadConfirmed, PublicID: ann.PublicID})
	emit(t, pool, webhook.Event{Type: webhook.LeadUnsubscribed, PublicID: ann.PublicID})
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: bob.PublicID})
	emit(t, pool, webhook.Event{Type: webhook.LeadConfirmed, PublicID: bob.PublicID})
	if _, err := webhook.FanOut(ctx, pool, 0); err != nil {
		t.Fatal(err)
	}
	// Ann's three were delivered 40 days ago; Bob's lead.created an hour
	// ago, and his lead.confirmed is still pending.
	if _, err := pool.Exec(ctx, `
UPDATE mailslot.webhook_deliveries d SET state = 'delivered', attempts = 1,
    delivered_at = CASE WHEN e.lead_public_id = $1 THEN now() - interval '40 days' ELSE now() - interval '1 hour' END
FROM mailslot.webhook_events e
WHERE e.id = d.event_id AND (e.lead_public_id = $1 OR e.type = 'lead.created')`, ann.PublicID); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		retention time.Duration
		limit     int
		want      int64
	}{
		{retention: 60 * 24 * time.Hour, want: 0},           // nothing that old
		{retention: 30 * 24 * time.Hour, limit: 1, want: 1}, // one of Ann's two older ones
		{retention: 30 * 24 * time.Hour, want: 1},           // the other
		{retention: time.Minute, want: 1},                   // Bob's lead.created: his pending lead.confirmed is newer
	} {
		if n, err := webhook.Prune(ctx, pool, tt.retention, tt.limit); err != nil || n != tt.want {
			t.Fatalf("Prune(%v, %d) = %d, %v; want %d", tt.retention, tt.limit, n, err, tt.want)
		}
	}
	for _, tt := range []struct {
		what, where string
		want        int
	}{
		{"Ann's newest", `lead_public_id = '` + ann.PublicID.String() + `' AND state = 'delivered'`, 1},
		{"Bob's pending", `lead_public_id = '` + bob.PublicID.String() + `' AND state = 'pending'`, 1},
		{"Bob's", `lead_public_id = '` + bob.PublicID.String() + `'`, 1},
	} {
		if n := countDeliveries(t, pool, tt.where); n != tt.want {
			t.Errorf("%s: %d deliveries, want %d", tt.what, n, tt.want)
		}
	}

	// Erasing Ann still tells the receiver.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	res, err := webhook.EraseLead(ctx, tx, ann.EmailHMAC)
	if err != nil {
		t.Fatal(err)
	}
	if res.ErasuresQueued != 1 {
		t.Errorf("erasure after pruning queued %d lead.erased, want 1 (to %s)", res.ErasuresQueued, sub.ID)
	}
}
