package webhook_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/webhook"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// TestEdgeRoleCanEmitDeliverAndErase: the edge's least-privilege role
// (pgschema/grants.sql) emits in a sync batch, claims and finishes
// deliveries, disables a gone subscription and runs the erasure's
// statements, all through the grants the migration gives it.
func TestEdgeRoleCanEmitDeliverAndErase(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewEmptyURL(t)
	owner, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, `DO $$ BEGIN CREATE ROLE mailslot_edge LOGIN PASSWORD 'x';
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgschema.Migrate(ctx, owner); err != nil {
		t.Fatal(err)
	}
	ownerPool := pgtest.Pool(t, dbURL)
	u, _ := url.Parse(dbURL)
	u.User = url.UserPassword("mailslot_edge", "x")
	edge := pgtest.Pool(t, u.String())

	rc := webhooktest.New(t, nil)
	addSub(t, ownerPool, rc.URL, "", webhook.Types...) // mailslotctl, as the owner
	ld := insertLead(t, ownerPool, "site.example", "ann@example.com")

	tx, err := edge.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	if err := webhook.QueueEmit(b, webhook.Event{Type: webhook.LeadCreated, Property: ld.Property, EmailHMAC: ld.EmailHMAC}); err != nil {
		t.Fatal(err)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatalf("emit as mailslot_edge: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	d := startDeliverer(t, webhook.Options{DB: edge, Timeout: time.Second, PollInterval: 10 * time.Millisecond})
	d.until(t, "delivered as mailslot_edge", func() bool {
		if r := d.round(t); r.Err != nil {
			t.Fatalf("round as mailslot_edge: %v", r.Err)
		}
		return len(rc.Accepted()) == 1
	})

	// The erasure, pipelined as the sync runs it.
	tx, err = edge.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b = &pgx.Batch{}
	b.Queue(`INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`, ld.EmailHMAC)
	var res webhook.EraseResult
	webhook.QueueErase(b, ld.EmailHMAC, &res)
	b.Queue(`DELETE FROM mailslot.leads WHERE email_hmac = $1`, ld.EmailHMAC)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		t.Fatalf("erase as mailslot_edge: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if res.EventsScrubbed != 1 || res.ErasuresQueued != 1 {
		t.Errorf("QueueErase result %+v", res)
	}
	rc.SetHandler(func(webhooktest.Request) int { return 410 })
	d.d.Wake()
	d.until(t, "the 410 disabled the subscription as mailslot_edge", func() bool {
		if r := d.round(t); r.Err != nil {
			t.Fatalf("round as mailslot_edge: %v", r.Err)
		}
		return countDeliveries(t, ownerPool, `state = 'cancelled'`) == 1
	})
	list, err := webhook.List(ctx, ownerPool)
	if err != nil || len(list) != 1 || list[0].DisabledReason != "gone" {
		t.Fatalf("subscriptions after the 410: %+v, %v", list, err)
	}
	// Subscriptions are the owner's to add.
	if _, err := webhook.Add(ctx, edge, webhook.NewSubscription{URL: rc.URL, Events: webhook.Types, Policy: dev}); err == nil {
		t.Error("mailslot_edge could add a subscription")
	}
}

// TestErasureRenamesSurvivingLead: a lead with sign-ups from after the
// erasure survives it (the sync resets it); it gets a new public id.
func TestErasureRenamesSurvivingLead(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	rc := webhooktest.New(t, nil)
	addSub(t, pool, rc.URL, "", webhook.Types...)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Erased two hours ago: the lead was seen one hour ago, after it.
	if _, err := tx.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now() - interval '2 hours', 'admin')`, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.EraseLead(ctx, tx, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var now string
	if err := pool.QueryRow(ctx, `SELECT public_id::text FROM mailslot.leads WHERE email_hmac = $1`, ld.EmailHMAC).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if now == ld.PublicID.String() {
		t.Fatal("the surviving lead kept the public id the receivers were told to erase")
	}
	var erasedFor string
	if err := pool.QueryRow(ctx, `SELECT lead_public_id::text FROM mailslot.webhook_events WHERE type = 'lead.erased'`).Scan(&erasedFor); err != nil || erasedFor != ld.PublicID.String() {
		t.Fatalf("lead.erased for %q, %v; want the old id %s", erasedFor, err, ld.PublicID)
	}
}
