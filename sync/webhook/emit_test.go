package webhook_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/webhook"
)

func TestEmitFansOutToMatchingSubscriptions(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	all := addSub(t, pool, "http://127.0.0.1:1/all", "", webhook.Types...)
	onlyA := addSub(t, pool, "http://127.0.0.1:1/a", "a.example", webhook.LeadCreated)
	onlyB := addSub(t, pool, "http://127.0.0.1:1/b", "b.example", webhook.LeadCreated)
	confirms := addSub(t, pool, "http://127.0.0.1:1/confirms", "", webhook.LeadConfirmed)
	removed := addSub(t, pool, "http://127.0.0.1:1/removed", "", webhook.Types...)
	if err := webhook.Remove(ctx, pool, removed.ID); err != nil {
		t.Fatal(err)
	}
	l := insertLead(t, pool, "a.example", "ann@example.com")

	subsOf := func(typ webhook.Type) map[uuid.UUID]bool {
		if _, err := webhook.FanOut(ctx, pool, 0); err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(ctx, `SELECT d.subscription_id FROM mailslot.webhook_deliveries d
			JOIN mailslot.webhook_events e ON e.id = d.event_id WHERE e.type = $1`, string(typ))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			t.Fatal(err)
		}
		out := map[uuid.UUID]bool{}
		for _, id := range ids {
			out[id] = true
		}
		return out
	}

	// By address, as the sync names a sign-up.
	if n := emit(t, pool, webhook.Event{Type: webhook.LeadCreated, Property: l.Property, EmailHMAC: l.EmailHMAC}); n != 2 {
		t.Fatalf("lead.created queued %d deliveries, want 2 (all, a.example)", n)
	}
	if got := subsOf(webhook.LeadCreated); len(got) != 2 || !got[all.ID] || !got[onlyA.ID] || got[onlyB.ID] || got[removed.ID] {
		t.Errorf("lead.created went to %v", got)
	}
	// lead.created is written once per lead, however often it is emitted.
	if n := emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: l.PublicID}); n != 0 {
		t.Errorf("second lead.created queued %d deliveries, want 0", n)
	}
	// By public id.
	if n := emit(t, pool, webhook.Event{Type: webhook.LeadConfirmed, PublicID: l.PublicID}); n != 2 {
		t.Fatalf("lead.confirmed queued %d deliveries, want 2", n)
	}
	if got := subsOf(webhook.LeadConfirmed); !got[all.ID] || !got[confirms.ID] {
		t.Errorf("lead.confirmed went to %v", got)
	}

	// The payload is read from the lead's row.
	var payload []byte
	if err := pool.QueryRow(ctx, `SELECT payload::text FROM mailslot.webhook_events WHERE type = 'lead.created'`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	d := data(t, append(append([]byte(`{"data":`), payload...), '}'))
	want := map[string]any{"id": l.PublicID.String(), "property": "a.example", "email": "ann@example.com",
		"name": "Ann Example", "consent": "express", "page": "/signup"}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("lead.created data[%q] = %v, want %v", k, d[k], v)
		}
	}
	if utm, _ := d["utm"].(map[string]any); utm["utm_campaign"] != "spring" {
		t.Errorf("lead.created utm = %v", d["utm"])
	}
	if ts, _ := d["created_at"].(string); len(ts) < 20 || ts[len(ts)-1] != 'Z' {
		t.Errorf("created_at = %q, want RFC 3339 in UTC", d["created_at"])
	}

	// Nobody wants events of a property no subscription covers (beyond
	// "all"), and an unknown lead writes nothing.
	if n := emit(t, pool, webhook.Event{Type: webhook.LeadCreated, Property: "a.example", EmailHMAC: hmacOf("nobody@example.com")}); n != 0 {
		t.Errorf("event for an unknown lead queued %d deliveries", n)
	}
}

func TestEmitWithoutSubscriptionsStoresNothing(t *testing.T) {
	pool := newPool(t)
	l := insertLead(t, pool, "a.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: l.PublicID})
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.webhook_events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("events stored without a subscriber: %d, %v", n, err)
	}
}

// TestQueueEmitIsPartOfTheCallersTransaction: emitted in the sync's
// pipelined batch, events commit and roll back with it.
func TestQueueEmitIsPartOfTheCallersTransaction(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	addSub(t, pool, "http://127.0.0.1:1/all", "", webhook.Types...)
	for _, commit := range []bool{false, true} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		email := "rollback@example.com"
		if commit {
			email = "commit@example.com"
		}
		b.Queue(`INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
			VALUES ('a.example', $1, $2, 'pending', now(), now())`, email, hmacOf(email))
		if err := webhook.QueueEmit(b, webhook.Event{Type: webhook.LeadCreated, Property: "a.example", EmailHMAC: hmacOf(email)},
			webhook.Event{Type: webhook.LeadUnsubscribed, Property: "a.example", EmailHMAC: hmacOf(email), Reason: webhook.ReasonBounced}); err != nil {
			t.Fatal(err)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT type, payload->>'email', COALESCE(payload->>'reason', '') FROM mailslot.webhook_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct{ Type, Email, Reason string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ev])
	if err != nil {
		t.Fatal(err)
	}
	want := []ev{{"lead.created", "commit@example.com", ""}, {"lead.unsubscribed", "commit@example.com", "bounced"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("events after one rolled-back and one committed batch = %+v, want %+v", got, want)
	}
}

func TestEmitRefusesMalformedEvents(t *testing.T) {
	tests := []struct {
		name string
		ev   webhook.Event
	}{
		{"unknown type", webhook.Event{Type: "lead.deleted", PublicID: uuid.New()}},
		{"erased is not emitted", webhook.Event{Type: webhook.LeadErased, PublicID: uuid.New()}},
		{"no lead", webhook.Event{Type: webhook.LeadCreated}},
		{"address without property", webhook.Event{Type: webhook.LeadCreated, EmailHMAC: hmacOf("x")}},
		{"unknown reason", webhook.Event{Type: webhook.LeadUnsubscribed, PublicID: uuid.New(), Reason: "bored"}},
		{"every property of no address", webhook.Event{Type: webhook.LeadCreated, EveryProperty: true}},
		{"every property and a property", webhook.Event{Type: webhook.LeadCreated, EveryProperty: true, Property: "p", EmailHMAC: hmacOf("x")}},
		{"every property but not created", webhook.Event{Type: webhook.LeadConfirmed, EveryProperty: true, EmailHMAC: hmacOf("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &pgx.Batch{}
			if err := webhook.QueueEmit(b, tt.ev); err == nil || b.Len() != 0 {
				t.Fatalf("QueueEmit(%+v) = %v with %d queued, want an error and nothing queued", tt.ev, err, b.Len())
			}
		})
	}
}

func TestSubscriptionValidation(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	tests := []struct {
		name string
		ns   webhook.NewSubscription
	}{
		{"no events", webhook.NewSubscription{URL: "http://127.0.0.1:1/x", Policy: dev}},
		{"unknown event", webhook.NewSubscription{URL: "http://127.0.0.1:1/x", Events: []webhook.Type{"lead.deleted"}, Policy: dev}},
		{"bad property", webhook.NewSubscription{URL: "http://127.0.0.1:1/x", Events: webhook.Types, Property: "a b", Policy: dev}},
		{"bad URL", webhook.NewSubscription{URL: "ftp://x", Events: webhook.Types, Policy: dev}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := webhook.Add(ctx, pool, tt.ns); err == nil {
				t.Fatal("Add accepted it")
			}
		})
	}
	c, err := webhook.Add(ctx, pool, webhook.NewSubscription{URL: "http://127.0.0.1:1/x",
		Events: webhook.ParseTypes("lead.erased, lead.created,lead.created"), Policy: dev})
	if err != nil {
		t.Fatal(err)
	}
	s, err := webhook.Get(ctx, pool, c.ID)
	if err != nil || len(s.Events) != 2 || s.Events[0] != webhook.LeadCreated || s.Events[1] != webhook.LeadErased {
		t.Fatalf("stored events = %v, %v; want [lead.created lead.erased]", s.Events, err)
	}
	if _, err := webhook.Get(ctx, pool, uuid.New()); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("Get of an unknown id = %v, want ErrNotFound", err)
	}
	if err := webhook.Remove(ctx, pool, uuid.New()); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("Remove of an unknown id = %v, want ErrNotFound", err)
	}
	list, err := webhook.List(ctx, pool)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
}

// TestEmitEveryPropertyOfAnAddress: lead.created by address alone names
// each of its leads (what an erasure reset), once each.
func TestEmitEveryPropertyOfAnAddress(t *testing.T) {
	pool := newPool(t)
	addSub(t, pool, "http://127.0.0.1:1/all", "", webhook.LeadCreated)
	a := insertLead(t, pool, "a.example", "ann@example.com")
	b := insertLead(t, pool, "b.example", "ann@example.com")
	insertLead(t, pool, "a.example", "bea@example.com")
	ev := webhook.Event{Type: webhook.LeadCreated, EmailHMAC: a.EmailHMAC, EveryProperty: true}
	if n := emit(t, pool, ev); n != 2 {
		t.Fatalf("lead.created for every lead of the address queued %d deliveries, want 2", n)
	}
	if n := emit(t, pool, ev); n != 0 {
		t.Errorf("again: %d deliveries, want 0 (once per lead)", n)
	}
	rows, err := pool.Query(context.Background(), `SELECT lead_public_id FROM mailslot.webhook_events ORDER BY property`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != a.PublicID || got[1] != b.PublicID {
		t.Errorf("events name %v, want %v and %v", got, a.PublicID, b.PublicID)
	}
}
