package webhook_test

import (
	"context"
	"testing"

	"github.com/mailslot/mailslot/sync/webhook"
)

// TestFanOutWritesEachEventOnceInOrder: emission writes events only; a
// fan-out writes one delivery per matching subscription, in event order,
// and a second fan-out finds nothing new.
func TestFanOutWritesEachEventOnceInOrder(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	a := addSub(t, pool, "http://127.0.0.1:1/a", "", webhook.Types...)
	addSub(t, pool, "http://127.0.0.1:1/b", "", webhook.LeadCreated)
	ann := insertLead(t, pool, "site.example", "ann@example.com")
	bob := insertLead(t, pool, "site.example", "bob@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ann.PublicID})
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: bob.PublicID},
		webhook.Event{Type: webhook.LeadConfirmed, PublicID: ann.PublicID})
	if n := countDeliveries(t, pool, `true`); n != 0 {
		t.Fatalf("%d deliveries before the fan-out, want 0 (emission writes events only)", n)
	}
	// A limit of 2 takes the two oldest events; the next fan-out the rest.
	for _, want := range []int64{4, 1, 0} {
		n, err := webhook.FanOut(ctx, pool, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("FanOut wrote %d deliveries, want %d", n, want)
		}
	}
	rows, err := pool.Query(ctx, `SELECT e.type, e.lead_public_id = $1, d.subscription_id = $2
		FROM mailslot.webhook_deliveries d JOIN mailslot.webhook_events e ON e.id = d.event_id
		WHERE d.state = 'pending' ORDER BY d.id`, ann.PublicID, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		typ      string
		ann, toA bool
	}
	var all []got
	for rows.Next() {
		var g got
		if err := rows.Scan(&g.typ, &g.ann, &g.toA); err != nil {
			t.Fatal(err)
		}
		all = append(all, g)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Written in event order: ann's lead.created (to a and b), bob's
	// lead.created (a and b), ann's lead.confirmed (a only).
	if len(all) != 5 || !all[0].ann || !all[1].ann || all[2].ann || all[3].ann ||
		all[4].typ != "lead.confirmed" || !all[4].ann || !all[4].toA {
		t.Errorf("deliveries in order = %+v", all)
	}
}

// TestErasureBeforeFanOut: an erasure of a lead whose events no fan-out
// has seen records them as cancelled for the subscriptions that were due
// them, queues lead.erased to those, and a later fan-out sends nothing
// of them.
func TestErasureBeforeFanOut(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	created := addSub(t, pool, "http://127.0.0.1:1/created", "", webhook.LeadCreated)
	other := addSub(t, pool, "http://127.0.0.1:1/other", "other.example", webhook.LeadCreated)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	res, err := webhook.EraseLead(ctx, tx, ld.EmailHMAC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM mailslot.leads WHERE email_hmac = $1`, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if res.EventsScrubbed != 1 || res.DeliveriesCancelled != 1 || res.ErasuresQueued != 1 {
		t.Errorf("EraseLead = %+v, want 1 event scrubbed, 1 delivery cancelled, 1 erasure queued", res)
	}
	if n, err := webhook.FanOut(ctx, pool, 0); err != nil || n != 0 {
		t.Errorf("FanOut after the erasure = %d, %v; want 0 deliveries", n, err)
	}
	for _, tt := range []struct {
		where string
		want  int
	}{
		{`state = 'cancelled' AND event_id IN (SELECT id FROM mailslot.webhook_events WHERE type = 'lead.created')`, 1},
		{`state = 'pending' AND event_id IN (SELECT id FROM mailslot.webhook_events WHERE type = 'lead.erased')`, 1},
		{`subscription_id = '` + other.ID.String() + `'`, 0},
		{`subscription_id = '` + created.ID.String() + `'`, 2},
	} {
		if n := countDeliveries(t, pool, tt.where); n != tt.want {
			t.Errorf("deliveries where %s = %d, want %d", tt.where, n, tt.want)
		}
	}
}
