package drain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/erasure"
)

// These tests drive the privacy features through the real path: HTTP
// requests to an edge's handlers (sign-ups, events, signed links, the admin
// API), its SQLite outbox, and a drain worker that syncs it into a fresh
// Postgres 18 database. Each edge has its own clock, so the tests choose
// when each row was captured and which batch it syncs in.

const (
	shop  = "shop.example"
	blog  = "blog.example"
	alice = "alice+news@example.com"
	bob   = "bob@example.org"
)

// privHasher hashes like the test edges (same pepper).
var privHasher = pii.NewHasher([]byte(edgetest.IPPepper))

// privBase is the time of the first row; tests step minutes from it. It is
// in the recent past so that no expiry or retention rule fires.
var privBase = time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour)

func minute(n int) time.Time { return privBase.Add(time.Duration(n) * time.Minute) }

type privClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *privClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *privClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// privEdge is one edge: its handlers on a real outbox, and a drain worker
// started on demand.
type privEdge struct {
	*edgetest.Edge
	t     *testing.T
	id    string
	clock *privClock
	// batch is the drain worker's batch size.
	batch int
}

func newPrivEdge(t *testing.T, nodeID string, env ...map[string]string) *privEdge {
	t.Helper()
	keys, err := token.ParseKeys(edgetest.TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	clock := &privClock{t: privBase}
	overrides := map[string]string{"MAILSLOT_NODE_ID": nodeID, "MAILSLOT_PUBLIC_URL": "https://links.example"}
	for _, m := range env {
		for k, v := range m {
			overrides[k] = v
		}
	}
	e := edgetest.NewEdge(t, overrides,
		func(o *api.Options) { o.Tokens, o.Now = keys, clock.Now })
	return &privEdge{Edge: e, t: t, id: nodeID, clock: clock, batch: 500}
}

// at sets the edge's clock: the next rows are captured at t.
func (e *privEdge) at(t time.Time) *privEdge {
	e.clock.set(t)
	return e
}

// serve sends a request from ip to h.
func (e *privEdge) serve(h http.Handler, method, target, contentType, body, ip string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ip != "" {
		req.RemoteAddr = ip + ":40000"
	}
	return edgetest.Serve(h, req)
}

func (e *privEdge) want(w *httptest.ResponseRecorder, status int, what string) {
	e.t.Helper()
	if w.Code != status {
		e.t.Fatalf("%s at %s: status %d, want %d (body %s)", what, e.id, w.Code, status, w.Body)
	}
}

// signUp posts a JSON sign-up from ip and returns its submission id.
func (e *privEdge) signUp(ip string, fields map[string]any) string {
	e.t.Helper()
	b, _ := json.Marshal(fields)
	w := e.serve(e.Public, http.MethodPost, "/v1/leads", "application/json", string(b), ip)
	e.want(w, http.StatusAccepted, "sign-up")
	return edgetest.DecodeJSON(e.t, w)["id"].(string)
}

func (e *privEdge) simpleSignUp(email, property, consent string) string {
	e.t.Helper()
	return e.signUp("192.0.2.10", map[string]any{"email": email, "property": property, "consent": consent})
}

// event posts telemetry events from ip.
func (e *privEdge) event(ip string, events ...map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"events": events})
	e.want(e.serve(e.Public, http.MethodPost, "/v1/events", "application/json", string(b), ip), http.StatusAccepted, "events")
}

// links mints the signed links for an address through the admin API.
func (e *privEdge) links(email, property string) api.Links {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email, "property": property})
	w := e.serve(e.Private, http.MethodPost, "/admin/links", "application/json", string(b), "")
	e.want(w, http.StatusOK, "mint links")
	var l api.Links
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
		e.t.Fatalf("decode links %s: %v", w.Body, err)
	}
	return l
}

// follow POSTs to a minted link as its holder's browser would (the page's
// button: an empty form) from ip.
func (e *privEdge) follow(link, ip string) {
	e.t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		e.t.Fatalf("parse link %q: %v", link, err)
	}
	e.want(e.serve(e.Public, http.MethodPost, u.RequestURI(), "application/x-www-form-urlencoded", "", ip), http.StatusOK, "POST "+u.Path)
}

func (e *privEdge) unsubscribe(email, property string) {
	e.t.Helper()
	e.follow(e.links(email, property).Unsubscribe, "192.0.2.10")
}

func (e *privEdge) confirm(email, property string) {
	e.t.Helper()
	e.follow(e.links(email, property).Confirm, "192.0.2.10")
}

// eraseAdmin erases an address through the edge's admin API.
func (e *privEdge) eraseAdmin(email string) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"email": email})
	e.want(e.serve(e.Private, http.MethodPost, "/admin/erasures", "application/json", string(b), ""), http.StatusAccepted, "admin erasure")
}

// sync runs a drain worker until the outbox has nothing pending, then
// stops it. Nothing may be quarantined: every row must be applicable.
func (e *privEdge) sync(dbURL string) {
	e.t.Helper()
	w, err := drain.New(drain.Options{
		Outbox: e.Outbox, DatabaseURL: dbURL, NodeID: e.id, Region: "test",
		BatchSize: e.batch, Interval: 5 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatalf("drain.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if ok, _ := testsync.Within(30*time.Second, func() (bool, string) { return e.Outbox.PendingCount() == 0, "" }); !ok {
		st, _ := w.Status(context.Background())
		cancel()
		<-done
		e.t.Fatalf("%s did not drain in 30s: %+v", e.id, st)
	}
	cancel()
	if err := <-done; err != nil {
		e.t.Fatalf("worker: %v", err)
	}
	st, err := e.Outbox.Stats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if st.Quarantined != 0 {
		e.t.Fatalf("%s quarantined %d rows", e.id, st.Quarantined)
	}
}

// pg wraps a test database with typed one-value queries.
type pg struct {
	t    *testing.T
	url  string
	pool *pgxpool.Pool
}

func newPG(t *testing.T) *pg {
	t.Helper()
	u := pgtest.NewURL(t)
	return &pg{t: t, url: u, pool: pgtest.Pool(t, u)}
}

func (p *pg) int(sql string, args ...any) int64 {
	p.t.Helper()
	var n int64
	if err := p.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (p *pg) text(sql string, args ...any) string {
	p.t.Helper()
	var s *string
	err := p.pool.QueryRow(context.Background(), sql, args...).Scan(&s)
	if err == pgx.ErrNoRows || s == nil {
		return ""
	}
	if err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	return *s
}

// status is the lead's consent status, or "" when there is no lead.
func (p *pg) status(email, property string) string {
	p.t.Helper()
	return p.text(`SELECT consent_status FROM mailslot.leads WHERE email_hmac = $1 AND property = $2`, privHasher.Email(email), property)
}

func (p *pg) wantStatus(email, property, want string) {
	p.t.Helper()
	if got := p.status(email, property); got != want {
		p.t.Errorf("consent status of %s on %s = %q, want %q", email, property, got, want)
	}
}

// snapshot is every row of a query as JSON text, for before/after checks.
func (p *pg) snapshot(sql string, args ...any) []string {
	p.t.Helper()
	rows, err := p.pool.Query(context.Background(), sql, args...)
	if err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// An unsubscribe holds against every later sign-up, an express claim
// included (anyone can post one for any address): only a confirmation
// through a link minted after the unsubscribe overturns it.
func TestUnsubscribeWithdrawsUntilAConfirmedOptIn(t *testing.T) {
	t.Parallel()
	// The same history, synced after every step and synced all at once:
	// the outcome must not depend on batching.
	for _, each := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync after each step=%v", each), func(t *testing.T) {
			db := newPG(t)
			e := newPrivEdge(t, "edge-a")
			step := func(min int, what string, wantStatus string, do func()) {
				t.Helper()
				e.at(minute(min))
				do()
				if each {
					e.sync(db.url)
					db.wantStatus(alice, shop, wantStatus)
					if t.Failed() {
						t.Fatalf("after %s", what)
					}
				}
			}
			step(0, "implied sign-up", "implied", func() { e.simpleSignUp(alice, shop, "implied") })
			step(1, "unsubscribe", "withdrawn", func() { e.unsubscribe(alice, shop) })
			step(2, "pending sign-up", "withdrawn", func() { e.simpleSignUp(alice, shop, "pending") })
			step(3, "implied sign-up", "withdrawn", func() { e.simpleSignUp(alice, shop, "implied") })
			if !each {
				e.sync(db.url)
				db.wantStatus(alice, shop, "withdrawn")
			}
			h := privHasher.Email(alice)
			if n := db.int(`SELECT count(*) FROM mailslot.consent_records
				WHERE email_hmac = $1 AND status = 'withdrawn' AND source = 'unsubscribe_link' AND recorded_at = $2
				  AND lead_id = (SELECT id FROM mailslot.leads WHERE email_hmac = $1)`, h, minute(1)); n != 1 {
				t.Errorf("%d withdrawn consent records from the unsubscribe link, want 1", n)
			}
			if n := db.int(`SELECT count(*) FROM mailslot.suppressions
				WHERE email_hmac = $1 AND property = $2 AND reason = 'unsubscribed' AND created_at = $3`, h, shop, minute(1)); n != 1 {
				t.Errorf("%d unsubscribe suppressions for the property, want 1", n)
			}
			// The unsubscribe is per property: another site's lead is untouched.
			e.at(minute(4)).simpleSignUp(alice, blog, "pending")
			// An express claim after the unsubscribe is recorded and
			// changes nothing.
			e.at(minute(5)).simpleSignUp(alice, shop, "express")
			e.sync(db.url)
			db.wantStatus(alice, shop, "withdrawn")
			db.wantStatus(alice, blog, "pending")
			if n := db.int(`SELECT count(*) FROM mailslot.consent_records WHERE email_hmac = $1 AND property = $2 AND status = 'express' AND recorded_at = $3`,
				h, shop, minute(5)); n != 1 {
				t.Errorf("the express claim's consent record is not kept (%d)", n)
			}
			// A confirmation through a link minted after the unsubscribe wins.
			e.at(minute(6)).confirm(alice, shop)
			e.sync(db.url)
			db.wantStatus(alice, shop, "express")
			if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1 AND property = $2 AND confirmed_at = $3 AND confirm_issued_at = $3`,
				h, shop, minute(6)); n != 1 {
				t.Errorf("confirmed_at and confirm_issued_at are not the confirmation's")
			}
			// And a later unsubscribe withdraws it again.
			e.at(minute(7)).unsubscribe(alice, shop)
			e.sync(db.url)
			db.wantStatus(alice, shop, "withdrawn")
		})
	}
}

func TestUnsubscribeSyncedBeforeItsLeadStillApplies(t *testing.T) {
	t.Parallel()
	db := newPG(t)
	a, b := newPrivEdge(t, "edge-a"), newPrivEdge(t, "edge-b")
	// Edge A takes an express sign-up and cannot sync yet; edge B takes the
	// unsubscribe a minute later and syncs first.
	a.at(minute(0)).simpleSignUp(alice, shop, "express")
	b.at(minute(1)).unsubscribe(alice, shop)
	b.sync(db.url)
	h := privHasher.Email(alice)
	if n := db.int(`SELECT count(*) FROM mailslot.leads`); n != 0 {
		t.Fatalf("%d leads before any sign-up synced", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.consent_records WHERE email_hmac = $1 AND status = 'withdrawn' AND lead_id IS NULL`, h); n != 1 {
		t.Errorf("%d lead-less withdrawn records, want 1", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.suppressions WHERE email_hmac = $1 AND property = $2`, h, shop); n != 1 {
		t.Errorf("%d suppressions, want 1", n)
	}
	a.sync(db.url)
	db.wantStatus(alice, shop, "withdrawn")
	// A pending sign-up after the unsubscribe does not overturn it either.
	a.at(minute(2)).simpleSignUp(alice, shop, "pending")
	a.sync(db.url)
	db.wantStatus(alice, shop, "withdrawn")
	// The suppression is per property.
	a.at(minute(3)).simpleSignUp(alice, blog, "implied")
	a.sync(db.url)
	db.wantStatus(alice, blog, "implied")
}

func TestConfirmLinkMakesPendingExpress(t *testing.T) {
	t.Parallel()
	t.Run("confirm after the lead synced", func(t *testing.T) {
		db := newPG(t)
		e := newPrivEdge(t, "edge-a")
		e.at(minute(0)).simpleSignUp(alice, shop, "pending")
		e.sync(db.url)
		db.wantStatus(alice, shop, "pending")
		e.at(minute(1)).confirm(alice, shop)
		e.sync(db.url)
		db.wantStatus(alice, shop, "express")
		h := privHasher.Email(alice)
		if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1 AND consent_basis = 'express' AND express_at = $2`, h, minute(1)); n != 1 {
			t.Errorf("lead's express_at is not the confirmation time")
		}
		if n := db.int(`SELECT count(*) FROM mailslot.consent_records
			WHERE email_hmac = $1 AND status = 'express' AND source = 'confirm_link' AND lead_id IS NOT NULL`, h); n != 1 {
			t.Errorf("%d express consent records from the confirm link, want 1", n)
		}
	})
	t.Run("confirm synced before the lead", func(t *testing.T) {
		db := newPG(t)
		a, b := newPrivEdge(t, "edge-a"), newPrivEdge(t, "edge-b")
		a.at(minute(0)).simpleSignUp(alice, shop, "pending")
		b.at(minute(1)).confirm(alice, shop)
		b.sync(db.url)
		a.sync(db.url)
		db.wantStatus(alice, shop, "express")
	})
}

// fullProfile gives an address on edge e a sign-up on each property with
// name, page, referrer and UTM (the page and referrer quote the address,
// which the edge must strip), events linked to the first sign-up, a
// confirmation and an unsubscribe, all from ip, starting at minute start.
func fullProfile(e *privEdge, email, name, ip string, start int) (submission string) {
	e.t.Helper()
	e.at(minute(start))
	submission = e.signUp(ip, map[string]any{
		"email": email, "property": shop, "consent": "pending", "name": name, "policy_version": "2026-01",
		"source": "footer", "page": "https://shop.example/pricing?plan=pro&email=" + url.QueryEscape(email),
		"referrer": "https://search.example/?q=" + email,
		"utm":      map[string]string{"source": "newsletter", "medium": "email", "campaign": "spring"},
	})
	e.event(ip,
		map[string]any{"type": "form_submit", "property": shop, "name": "signup", "submission_id": submission,
			"page": "https://shop.example/pricing?for=" + email, "props": map[string]any{"plan": "pro", "seats": 3}},
		map[string]any{"type": "click", "property": shop, "name": "cta", "submission_id": submission,
			"utm": map[string]string{"source": "newsletter"}})
	e.at(minute(start+1)).signUp(ip, map[string]any{"email": email, "property": blog, "consent": "implied", "name": name,
		"source": "inquiry", "referrer": "https://blog.example/post"})
	e.at(minute(start+2)).follow(e.links(email, shop).Confirm, ip)
	e.at(minute(start+3)).follow(e.links(email, blog).Unsubscribe, ip)
	return submission
}

// checkErased checks what an erasure of email as of erasedAt leaves in
// Postgres: no lead, consent records and linked events without anything
// that points at the person, one tombstone and an all-properties
// suppression.
func checkErased(t *testing.T, db *pg, email string, erasedAt time.Time, by string, records int64, linkedEvents []string) {
	t.Helper()
	h := privHasher.Email(email)
	if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1 OR email = $2`, h, email); n != 0 {
		t.Errorf("%d leads of the erased address remain", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.consent_records WHERE email_hmac = $1`, h); n != 0 {
		t.Errorf("%d consent records still carry the address's hash", n)
	}
	if records >= 0 {
		if n := db.int(`SELECT count(*) FROM mailslot.consent_records WHERE email_hmac IS NULL AND ip_hmac IS NULL AND lead_id IS NULL`); n != records {
			t.Errorf("%d scrubbed consent records kept as proof, want %d", n, records)
		}
	}
	for _, sub := range linkedEvents {
		if n := db.int(`SELECT count(*) FROM mailslot.events WHERE lead_submission = $1 OR payload ? 'submission_id'`, sub); n != 0 {
			t.Errorf("%d events still name the erased sign-up %s", n, sub)
		}
	}
	if n := db.int(`SELECT count(*) FROM mailslot.events WHERE ip_hmac = $1`, privHasher.IP("198.51.100.7")); n != 0 {
		t.Errorf("%d events still carry the erased person's IP hash", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.tombstones WHERE email_hmac = $1 AND erased_at = $2 AND requested_by = $3`, h, erasedAt, by); n != 1 {
		t.Errorf("%d tombstones (%s, %s), want 1; all: %v", n, erasedAt, by,
			db.snapshot(`SELECT to_jsonb(t)::text FROM mailslot.tombstones t`))
	}
	if n := db.int(`SELECT count(*) FROM mailslot.suppressions WHERE email_hmac = $1 AND property = '' AND reason = 'erased'`, h); n != 1 {
		t.Errorf("%d all-properties erasure suppressions, want 1", n)
	}
}

// bobRows is everything Postgres holds of the address that must survive.
func bobRows(db *pg) []string {
	h := privHasher.Email(bob)
	return append(append(
		db.snapshot(`SELECT to_jsonb(l)::text FROM mailslot.leads l WHERE email_hmac = $1 ORDER BY id`, h),
		db.snapshot(`SELECT to_jsonb(c)::text FROM mailslot.consent_records c WHERE email_hmac = $1 ORDER BY id`, h)...),
		db.snapshot(`SELECT to_jsonb(e)::text FROM mailslot.events e WHERE ip_hmac = $1 ORDER BY id`, privHasher.IP("203.0.113.9"))...)
}

func equalRows(t *testing.T, what string, before, after []string) {
	t.Helper()
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Errorf("%s changed:\nbefore %v\nafter  %v", what, before, after)
	}
}

func TestErasureRowInABatch(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"admin", "self_service"} {
		t.Run(how, func(t *testing.T) {
			db := newPG(t)
			e := newPrivEdge(t, "edge-a")
			sub := fullProfile(e, alice, "Alice Liddell", "198.51.100.7", 0)
			fullProfile(e, bob, "Bob Builder", "203.0.113.9", 10)
			e.sync(db.url)
			db.wantStatus(alice, shop, "express")
			db.wantStatus(alice, blog, "withdrawn")
			bobBefore := bobRows(db)
			if len(bobBefore) != 8 { // 2 leads, 4 consent records, 2 events
				t.Fatalf("bob has %d rows before the erasure, want 8", len(bobBefore))
			}

			e.at(minute(30))
			if how == "admin" {
				e.eraseAdmin(alice)
			} else {
				e.follow(e.links(alice, shop).Erase, "198.51.100.7")
			}
			e.sync(db.url)
			// alice had 2 sign-ups, a confirmation and an unsubscribe.
			checkErased(t, db, alice, minute(30), how, 4, []string{sub})
			if n := db.int(`SELECT count(*) FROM mailslot.tombstones WHERE origin_node = 'edge-a'`); n != 1 {
				t.Errorf("tombstone does not name the edge that took the request")
			}
			if n := db.int(`SELECT count(*) FROM mailslot.ledger WHERE kind = 'erasure' AND outcome = 'applied'`); n != 1 {
				t.Errorf("%d applied erasure rows in the ledger, want 1", n)
			}
			// Events stay, unlinked, as telemetry.
			if n := db.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NULL AND lead_submission IS NULL AND ip_hmac IS NULL`); n != 2 {
				t.Errorf("%d unlinked events, want alice's 2", n)
			}
			equalRows(t, "bob's rows", bobBefore, bobRows(db))
			db.wantStatus(bob, shop, "express")
		})
	}
}

func TestSignUpCapturedBeforeTheErasureIsDropped(t *testing.T) {
	t.Parallel()
	// batch 1 puts the sign-up and its events in separate batches, so the
	// events arrive after the batch that dropped the sign-up committed.
	for _, batch := range []int{500, 1} {
		t.Run(fmt.Sprintf("batch size %d", batch), func(t *testing.T) {
			db := newPG(t)
			a, b := newPrivEdge(t, "edge-a"), newPrivEdge(t, "edge-b")
			a.batch = batch
			// Edge A is offline: it holds a sign-up, its events and a
			// confirmation, all captured before the erasure.
			a.at(minute(0))
			sub := a.signUp("198.51.100.7", map[string]any{"email": alice, "property": shop, "consent": "pending", "name": "Alice"})
			a.event("198.51.100.7", map[string]any{"type": "form_submit", "property": shop, "submission_id": sub})
			a.at(minute(1)).confirm(alice, shop)
			// The address is erased at edge B, which syncs.
			b.at(minute(5)).eraseAdmin(alice)
			b.sync(db.url)
			// Edge A comes back; the rows it captured before the erasure
			// must not resurrect anything.
			a.sync(db.url)
			db.wantStatus(alice, shop, "")
			checkErased(t, db, alice, minute(5), "admin", -1, []string{sub})
			if n := db.int(`SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-a' AND kind IN ('lead', 'consent') AND outcome = 'erased'`); n != 2 {
				t.Errorf("%d of edge A's sign-up and confirmation recorded as erased in the ledger, want 2", n)
			}
			if n := db.int(`SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-a' AND kind = 'event' AND outcome = 'applied'`); n != 1 {
				t.Errorf("the event is not applied (%d)", n)
			}
			if n := db.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NULL AND lead_submission IS NULL AND ip_hmac IS NULL`); n != 1 {
				t.Errorf("the event of the dropped sign-up is not kept unlinked and without IP hash")
			}

			// A genuine sign-up after the erasure is kept, held back by the
			// erasure's suppression whatever it claims: an express claim
			// is no proof that the erased person asked again.
			a.at(minute(10)).simpleSignUp(alice, shop, "express")
			a.at(minute(11)).simpleSignUp(alice, blog, "pending")
			a.sync(db.url)
			db.wantStatus(alice, shop, "withdrawn")
			db.wantStatus(alice, blog, "withdrawn")
			if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email = $1 AND first_seen_at >= $2`, alice, minute(10)); n != 2 {
				t.Errorf("%d leads made only of post-erasure sign-ups, want 2", n)
			}
			// Confirming through a link minted after the erasure does.
			a.at(minute(12)).confirm(alice, shop)
			a.sync(db.url)
			db.wantStatus(alice, shop, "express")
		})
	}
}

func TestDrainEraseMatchesASyncedErasure(t *testing.T) {
	t.Parallel()
	db := newPG(t)
	e := newPrivEdge(t, "edge-a")
	sub := fullProfile(e, alice, "Alice Liddell", "198.51.100.7", 0)
	fullProfile(e, bob, "Bob Builder", "203.0.113.9", 10)
	e.sync(db.url)
	bobBefore := bobRows(db)

	h := privHasher.Email(alice)
	res, err := drain.Erase(context.Background(), db.pool, h, minute(30), "operator")
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	want := drain.EraseResult{LeadsDeleted: 2, ConsentScrubbed: 4, EventsScrubbed: 2}
	if res != want {
		t.Errorf("Erase = %+v, want %+v", res, want)
	}
	checkErased(t, db, alice, minute(30), "operator", 4, []string{sub})
	equalRows(t, "bob's rows", bobBefore, bobRows(db))

	// A second erasure of the same address finds nothing more to do: it
	// records the request and changes nothing else.
	everything := func() []string {
		return append(append(append(db.snapshot(`SELECT to_jsonb(l)::text FROM mailslot.leads l ORDER BY id`),
			db.snapshot(`SELECT to_jsonb(c)::text FROM mailslot.consent_records c ORDER BY id`)...),
			db.snapshot(`SELECT to_jsonb(e)::text FROM mailslot.events e ORDER BY id`)...),
			db.snapshot(`SELECT email_hmac::text || property || reason FROM mailslot.suppressions ORDER BY 1`)...)
	}
	before := everything()
	res, err = drain.Erase(context.Background(), db.pool, h, minute(40), "operator")
	if err != nil {
		t.Fatalf("second Erase: %v", err)
	}
	if res != (drain.EraseResult{}) {
		t.Errorf("second Erase = %+v, want nothing done", res)
	}
	equalRows(t, "Postgres after a second erasure", before, everything())
	if n := db.int(`SELECT count(*) FROM mailslot.suppressions WHERE email_hmac = $1 AND property = ''`, h); n != 1 {
		t.Errorf("%d all-properties suppressions after two erasures, want 1", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.tombstones WHERE email_hmac = $1`, h); n != 2 {
		t.Errorf("%d tombstones after two erasure requests, want 2", n)
	}
}

func TestErasureOfALeadWithLaterSignUpsKeepsOnlyThem(t *testing.T) {
	t.Parallel()
	// A sign-up from after the erasure time reached Postgres before the
	// erasure did: the lead stays, reset to what that sign-up says, and
	// nothing from before the erasure points at it any more.
	db := newPG(t)
	e := newPrivEdge(t, "edge-a")
	old := e.at(minute(0)).signUp("198.51.100.7", map[string]any{"email": alice, "property": shop, "consent": "express", "name": "Alice"})
	e.event("198.51.100.7", map[string]any{"type": "form_submit", "property": shop, "submission_id": old})
	e.at(minute(20)).signUp("192.0.2.44", map[string]any{"email": alice, "property": shop, "consent": "pending", "page": "https://shop.example/again"})
	e.sync(db.url)

	res, err := drain.Erase(context.Background(), db.pool, privHasher.Email(alice), minute(10), "operator")
	if err != nil {
		t.Fatal(err)
	}
	if res.LeadsReset != 1 || res.LeadsDeleted != 0 || res.ConsentScrubbed != 1 || res.EventsScrubbed != 1 {
		t.Errorf("Erase = %+v, want 1 lead reset, 1 consent record and 1 event scrubbed", res)
	}
	if got := db.text(`SELECT concat_ws(',', consent_status, name, to_jsonb(l) ->> 'name_at', first_page, submissions::text, (first_seen_at = $2)::text)
		FROM mailslot.leads l WHERE email_hmac = $1`, privHasher.Email(alice), minute(20)); got != "withdrawn,https://shop.example/again,1,true" {
		t.Errorf("reset lead = %q, want withdrawn (pending after the erasure), no name, only the later sign-up", got)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.consent_records WHERE recorded_at = $1 AND (lead_id IS NOT NULL OR email_hmac IS NOT NULL OR ip_hmac IS NOT NULL)`, minute(0)); n != 0 {
		t.Errorf("the pre-erasure consent record still points at the lead or the person")
	}
	if n := db.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL OR lead_submission IS NOT NULL OR ip_hmac IS NOT NULL`); n != 0 {
		t.Errorf("the pre-erasure event still points at the lead or the person")
	}
}

func TestTombstonesBecomeVisibleInIDOrder(t *testing.T) {
	t.Parallel()
	// Edges pull tombstones by id. If a tombstone with a lower id could
	// commit after one with a higher id, an edge that pulled in between
	// would move its cursor past it and never scrub that address.
	db := newPG(t)
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).simpleSignUp(alice, shop, "express")
	e.simpleSignUp(bob, shop, "express")
	puller, err := erasure.New(erasure.Options{Outbox: e.Outbox, DatabaseURL: db.url})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	first := pgtest.NewHeldCommit(db.pool)
	firstDone := make(chan error, 1)
	go func() {
		_, err := drain.Erase(ctx, first, privHasher.Email(alice), minute(5), "operator")
		firstDone <- err
	}()
	<-first.Reached // alice's tombstone has its id; the transaction is open
	secondDone := make(chan error, 1)
	go func() {
		_, err := drain.Erase(ctx, db.pool, privHasher.Email(bob), minute(6), "operator")
		secondDone <- err
	}()
	select {
	case err := <-secondDone:
		secondDone <- err // committed while the first is open: the edge may see it first
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := puller.Pull(ctx); err != nil {
		t.Fatalf("pull: %v", err)
	}
	close(first.Release)
	for _, c := range []chan error{firstDone, secondDone} {
		if err := <-c; err != nil {
			t.Fatalf("Erase: %v", err)
		}
	}
	if _, err := puller.Pull(ctx); err != nil {
		t.Fatalf("pull: %v", err)
	}
	out := edgetest.OpenDB(t, e.Config.DataDir)
	for _, addr := range []string{alice, bob} {
		if n := edgetest.Count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ?`, privHasher.Email(addr)); n != 0 {
			t.Errorf("%s: %d outbox rows not scrubbed after both tombstones committed and the edge pulled", addr, n)
		}
	}
	cursor, _ := e.Outbox.TombstoneCursor(ctx)
	if max := db.int(`SELECT max(id) FROM mailslot.tombstones`); cursor != max {
		t.Errorf("cursor %d, want %d", cursor, max)
	}
}

// payloadsOf is every outbox payload of a kind, as text.
func payloadsOf(t *testing.T, e *privEdge, kind mailslot.Kind) []string {
	t.Helper()
	var out []string
	for _, p := range edgetest.Payloads(t, edgetest.OpenDB(t, e.Config.DataDir), kind) {
		b, _ := json.Marshal(p)
		out = append(out, string(b))
	}
	return out
}

func TestEdgeScrubsItsOwnOutboxAtOnce(t *testing.T) {
	t.Parallel()
	// The edge that takes an erasure scrubs its outbox in the same
	// transaction, before anything syncs.
	e := newPrivEdge(t, "edge-a")
	sub := fullProfile(e, alice, "Alice Liddell", "198.51.100.7", 0)
	e.at(minute(30)).eraseAdmin(alice)
	for _, p := range append(payloadsOf(t, e, mailslot.KindLead), payloadsOf(t, e, mailslot.KindConsent)...) {
		if p != mailslot.ErasedPayload {
			t.Errorf("payload %s not scrubbed", p)
		}
	}
	for _, p := range payloadsOf(t, e, mailslot.KindEvent) {
		if strings.Contains(p, sub) {
			t.Errorf("event %s still names the erased sign-up", p)
		}
	}
	out := edgetest.OpenDB(t, e.Config.DataDir)
	if n := edgetest.Count(t, out, `SELECT count(*) FROM outbox WHERE email_hmac = ? AND kind != 'erasure'`, privHasher.Email(alice)); n != 0 {
		t.Errorf("%d rows still carry the hash", n)
	}
	if n := edgetest.Count(t, out, `SELECT count(*) FROM outbox WHERE ip_hmac = ?`, privHasher.IP("198.51.100.7")); n != 0 {
		t.Errorf("%d rows still carry the IP hash", n)
	}
	if n := edgetest.Count(t, out, `SELECT count(*) FROM outbox WHERE kind = 'erasure' AND email_hmac = ?`, privHasher.Email(alice)); n != 1 {
		t.Errorf("%d erasure requests stored, want 1", n)
	}
}
