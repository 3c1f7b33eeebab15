package drain_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/webhook"
)

// Webhook events written by the sync, through the real path (edge handlers,
// outbox, drain worker, Postgres 18). Delivery is sync/webhook's business
// and is tested there and end to end in cmd/mailslotctl.

// hookEvent is one stored webhook event.
type hookEvent struct {
	Type     string
	LeadID   uuid.UUID
	Tomb     *int64
	Data     map[string]any
	Statuses []string // its deliveries' states
}

// hookEvents fans the stored events out first, as a deliverer's round
// would, so that every event shows the deliveries it gets.
func (p *pg) hookEvents() []hookEvent {
	p.t.Helper()
	if _, err := webhook.FanOut(context.Background(), p.pool, 0); err != nil {
		p.t.Fatal(err)
	}
	rows, err := p.pool.Query(context.Background(), `
		SELECT e.type, e.lead_public_id, e.tombstone_id, e.payload,
		       COALESCE((SELECT array_agg(d.state ORDER BY d.id) FROM mailslot.webhook_deliveries d WHERE d.event_id = e.id), '{}')
		FROM mailslot.webhook_events e ORDER BY e.seq`)
	if err != nil {
		p.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hookEvent, error) {
		var h hookEvent
		var payload []byte
		err := r.Scan(&h.Type, &h.LeadID, &h.Tomb, &payload, &h.Statuses)
		if err == nil {
			err = json.Unmarshal(payload, &h.Data)
		}
		return h, err
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *pg) publicID(email, property string) uuid.UUID {
	p.t.Helper()
	var id uuid.UUID
	if err := p.pool.QueryRow(context.Background(), `SELECT public_id FROM mailslot.leads WHERE email_hmac = $1 AND property = $2`,
		privHasher.Email(email), property).Scan(&id); err != nil {
		p.t.Fatalf("public id of %s on %s: %v", email, property, err)
	}
	return id
}

func (p *pg) subscribe(types ...webhook.Type) webhook.Created {
	p.t.Helper()
	c, err := webhook.Add(context.Background(), p.pool, webhook.NewSubscription{
		URL: "http://127.0.0.1:9/hooks", Events: types, Policy: safedial.Policy{AllowPrivate: true}})
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

func types(evs []hookEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func TestSyncWritesWebhookEventsInItsTransaction(t *testing.T) {
	db := newPG(t)
	db.subscribe(webhook.Types...)
	e := newPrivEdge(t, "edge-a")

	e.at(minute(0)).signUp("192.0.2.10", map[string]any{"email": alice, "property": shop, "consent": "pending", "name": "Alice"})
	e.sync(db.url)
	id := db.publicID(alice, shop)
	evs := db.hookEvents()
	if len(evs) != 1 || evs[0].Type != "lead.created" || evs[0].LeadID != id {
		t.Fatalf("after a sign-up: %+v, want one lead.created for %s", evs, id)
	}
	if d := evs[0].Data; d["email"] != alice || d["name"] != "Alice" || d["consent"] != "pending" || d["property"] != shop || d["id"] != id.String() {
		t.Errorf("lead.created data = %v", d)
	}
	if !slices.Equal(evs[0].Statuses, []string{"pending"}) {
		t.Errorf("lead.created deliveries = %v, want one pending", evs[0].Statuses)
	}

	// A second sign-up of the lead is no new lead.
	e.at(minute(1)).simpleSignUp(alice, shop, "pending")
	e.at(minute(2)).confirm(alice, shop)
	e.sync(db.url)
	e.at(minute(3)).unsubscribe(alice, shop)
	e.at(minute(4)).simpleSignUp(bob, shop, "express")
	e.sync(db.url)
	evs = db.hookEvents()
	if got, want := types(evs), []string{"lead.created", "lead.confirmed", "lead.unsubscribed", "lead.created"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if d := evs[1].Data; d["consent"] != "express" || d["email"] != alice || d["confirmed_at"] != minute(2).Format("2006-01-02T15:04:05.000000Z") {
		t.Errorf("lead.confirmed data = %v", d)
	}
	if d := evs[2].Data; d["reason"] != webhook.ReasonWithdrawn || d["email"] != alice || d["unsubscribed_at"] != minute(3).Format("2006-01-02T15:04:05.000000Z") {
		t.Errorf("lead.unsubscribed data = %v", d)
	}
	bobID := db.publicID(bob, shop)
	if evs[3].LeadID != bobID {
		t.Errorf("second lead.created names %s, want bob's %s", evs[3].LeadID, bobID)
	}

	// The erasure, synced: alice's events keep only id and property, what
	// was not delivered never will be, and lead.erased is queued against
	// the tombstone. Bob's event is untouched.
	e.at(minute(5)).eraseAdmin(alice)
	e.sync(db.url)
	tomb := db.int(`SELECT id FROM mailslot.tombstones WHERE email_hmac = $1`, privHasher.Email(alice))
	evs = db.hookEvents()
	if got, want := types(evs), []string{"lead.created", "lead.confirmed", "lead.unsubscribed", "lead.created", "lead.erased"}; !slices.Equal(got, want) {
		t.Fatalf("events after the erasure = %v, want %v", got, want)
	}
	for _, ev := range evs[:3] {
		if len(ev.Data) != 2 || ev.Data["id"] != id.String() || ev.Data["property"] != shop {
			t.Errorf("%s after the erasure holds %v, want only id and property", ev.Type, ev.Data)
		}
		if !slices.Equal(ev.Statuses, []string{"cancelled"}) {
			t.Errorf("%s deliveries after the erasure = %v, want cancelled", ev.Type, ev.Statuses)
		}
	}
	if evs[3].Data["email"] != bob || !slices.Equal(evs[3].Statuses, []string{"pending"}) {
		t.Errorf("bob's lead.created after alice's erasure = %+v", evs[3])
	}
	erased := evs[4]
	if erased.LeadID != id || erased.Tomb == nil || *erased.Tomb != tomb || !slices.Equal(erased.Statuses, []string{"pending"}) {
		t.Errorf("lead.erased = %+v, want lead %s, tombstone %d, one pending delivery", erased, id, tomb)
	}
	if _, ok := erased.Data["email"]; ok || erased.Data["id"] != id.String() {
		t.Errorf("lead.erased data = %v, want the id and no address", erased.Data)
	}
	rec, err := webhook.ErasureDeliveries(context.Background(), db.pool, tomb)
	if err != nil || len(rec) != 1 || rec[0].LeadPublicID != id || rec[0].State != "pending" {
		t.Errorf("erasure record = %+v, %v; want one pending delivery of lead.erased", rec, err)
	}
}

func TestSyncWithoutSubscriptionsWritesNoWebhookRows(t *testing.T) {
	db := newPG(t)
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).simpleSignUp(alice, shop, "pending")
	e.at(minute(1)).confirm(alice, shop)
	e.at(minute(2)).unsubscribe(alice, shop)
	e.at(minute(3)).eraseAdmin(alice)
	e.at(minute(4)).simpleSignUp(alice, blog, "express")
	e.sync(db.url)
	if n := db.int(`SELECT (SELECT count(*) FROM mailslot.webhook_events) + (SELECT count(*) FROM mailslot.webhook_deliveries)`); n != 0 {
		t.Errorf("%d webhook rows written with no subscription", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1 AND property = $2`, privHasher.Email(alice), blog); n != 1 {
		t.Errorf("the sign-up after the erasure did not sync (%d leads)", n)
	}
}

// createdRecords is how many sync batches' lead.created records wait for
// the fan-out to expand them.
func (p *pg) createdRecords() int {
	p.t.Helper()
	var n int
	if err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.webhook_created`).Scan(&n); err != nil {
		p.t.Fatal(err)
	}
	return n
}

func TestLeadCreatedComesBeforeTheLeadsLaterEvents(t *testing.T) {
	// The sync records a batch's new leads in one row; the lead's next
	// event is written before any fan-out expands that row. The fan-out
	// still hands lead.created out first, carrying the lead as it stands.
	db := newPG(t)
	db.subscribe(webhook.Types...)
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).simpleSignUp(alice, shop, "pending")
	e.at(minute(0)).simpleSignUp(bob, shop, "pending")
	e.sync(db.url)
	if n := db.createdRecords(); n != 1 {
		t.Fatalf("a batch of two new leads left %d lead.created records, want 1", n)
	}
	e.at(minute(1)).confirm(alice, shop)
	e.sync(db.url)
	evs := db.hookEvents()
	if got, want := types(evs), []string{"lead.created", "lead.created", "lead.confirmed"}; !slices.Equal(got, want) {
		t.Fatalf("events in order = %v, want %v", got, want)
	}
	created := map[uuid.UUID]hookEvent{evs[0].LeadID: evs[0], evs[1].LeadID: evs[1]}
	a, b := created[db.publicID(alice, shop)], created[db.publicID(bob, shop)]
	if a.Data["email"] != alice || a.Data["consent"] != "express" || b.Data["email"] != bob || b.Data["consent"] != "pending" {
		t.Errorf("lead.created data = %v and %v, want alice as she stands (confirmed: express) and bob pending", a.Data, b.Data)
	}
	if evs[2].LeadID != db.publicID(alice, shop) {
		t.Errorf("lead.confirmed names %s", evs[2].LeadID)
	}
	for _, ev := range evs {
		if !slices.Equal(ev.Statuses, []string{"pending"}) {
			t.Errorf("%s deliveries = %v, want one pending", ev.Type, ev.Statuses)
		}
	}
	if n := db.createdRecords(); n != 0 {
		t.Errorf("%d lead.created records left after the fan-out", n)
	}
	// Expanded once: a second fan-out writes nothing more.
	if again := db.hookEvents(); len(again) != len(evs) {
		t.Errorf("a second fan-out left %d events, want %d", len(again), len(evs))
	}
}

func TestLeadErasedBeforeItsLeadCreatedWentOut(t *testing.T) {
	// The erasure syncs before any fan-out expanded the sign-up's
	// lead.created: receivers get lead.erased for the id and never the
	// address.
	db := newPG(t)
	db.subscribe(webhook.Types...)
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).simpleSignUp(alice, shop, "pending")
	e.sync(db.url)
	id := db.publicID(alice, shop)
	e.at(minute(1)).eraseAdmin(alice)
	e.sync(db.url)
	evs := db.hookEvents()
	if got, want := types(evs), []string{"lead.erased"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if evs[0].LeadID != id || evs[0].Data["email"] != nil {
		t.Errorf("lead.erased = %+v, want the id %s and no address", evs[0], id)
	}
	if n := db.createdRecords(); n != 0 {
		t.Errorf("%d lead.created records left after the fan-out", n)
	}
}

func TestErasureThatResetsALeadAnnouncesItAsNew(t *testing.T) {
	for _, subscribedFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "subscribed after the sync", true: "subscribed before: the old lead.created never expanded"}[subscribedFirst], func(t *testing.T) {
			testResetAnnouncedAsNew(t, subscribedFirst)
		})
	}
}

func testResetAnnouncedAsNew(t *testing.T, subscribedFirst bool) {
	// A sign-up from after the erasure time reached Postgres first: the
	// lead survives, reset. Receivers are told to erase the old id and get
	// a lead.created under a new one, with only what the later sign-up says.
	db := newPG(t)
	if subscribedFirst {
		db.subscribe(webhook.LeadCreated, webhook.LeadErased)
	}
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).signUp("198.51.100.7", map[string]any{"email": alice, "property": shop, "consent": "express", "name": "Alice"})
	e.at(minute(20)).signUp("192.0.2.44", map[string]any{"email": alice, "property": shop, "consent": "pending", "page": "https://shop.example/again"})
	e.sync(db.url)
	if !subscribedFirst {
		db.subscribe(webhook.LeadCreated, webhook.LeadErased)
	}
	old := db.publicID(alice, shop)

	res, err := drain.Erase(context.Background(), db.pool, privHasher.Email(alice), minute(10), "operator")
	if err != nil {
		t.Fatal(err)
	}
	if res.LeadsReset != 1 || res.LeadsDeleted != 0 || res.ConsentScrubbed != 1 {
		t.Errorf("Erase = %+v, want 1 lead reset and 1 consent record scrubbed", res)
	}
	now := db.publicID(alice, shop)
	if now == old {
		t.Fatalf("the reset lead kept its public id %s", old)
	}
	evs := db.hookEvents()
	if got, want := types(evs), []string{"lead.erased", "lead.created"}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if evs[0].LeadID != old || evs[1].LeadID != now {
		t.Errorf("lead.erased names %s (want %s), lead.created %s (want %s)", evs[0].LeadID, old, evs[1].LeadID, now)
	}
	if d := evs[1].Data; d["name"] != nil || d["page"] != "https://shop.example/again" || d["email"] != alice {
		t.Errorf("lead.created of the reset lead = %v, want no name and the later page", d)
	}
}
