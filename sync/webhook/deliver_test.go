package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/internal/stdwebhook"
	"github.com/mailslot/mailslot/internal/stdwebhook/stdwebhooktest"
	"github.com/mailslot/mailslot/sync/webhook"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// TestDeliveryThroughOutage: the receiver is down, then slower than the
// timeout, then answers 500, then recovers. Every event is delivered, none
// is lost, and each lead's events are accepted in the order they happened.
func TestDeliveryThroughOutage(t *testing.T) {
	pool := newPool(t)
	// Reserve a port and leave it closed: the receiver is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	sub := addSub(t, pool, "http://"+addr+"/hook?token=sekrit", "", webhook.Types...)
	secret := stdwebhook.MustParseSecret(sub.Secret)

	var leads []lead
	for _, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		ld := insertLead(t, pool, "site.example", email)
		leads = append(leads, ld)
		emit(t, pool,
			webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID},
			webhook.Event{Type: webhook.LeadConfirmed, PublicID: ld.PublicID},
			webhook.Event{Type: webhook.LeadUnsubscribed, PublicID: ld.PublicID})
	}
	const events = 9

	d := startDeliverer(t, webhook.Options{DB: pool, Owner: "test", Timeout: 300 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})

	// Down: attempts fail to connect.
	d.until(t, "a failed round while the receiver is down", func() bool { return d.round(t).Failed > 0 })
	var lastErr string
	if err := pool.QueryRow(context.Background(), `SELECT last_error FROM mailslot.webhook_deliveries WHERE last_error IS NOT NULL LIMIT 1`).Scan(&lastErr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(lastErr, "sekrit") {
		t.Errorf("stored error %q carries the URL's query", lastErr)
	}

	// Slow: the receiver holds every request past the timeout.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on the reserved port: %v", err)
	}
	var phase atomic.Value
	phase.Store("slow")
	rc := webhooktest.NewOn(t, l, func(r webhooktest.Request) int {
		switch phase.Load() {
		case "slow":
			return 0
		case "500":
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	d.until(t, "a request to the slow receiver", func() bool { d.round(t); return len(rc.Requests()) > 0 })
	d.until(t, "a failed round against the slow receiver", func() bool { return d.round(t).Failed > 0 })
	phase.Store("500")
	seen500 := func() bool {
		for _, r := range rc.Requests() {
			if r.Status == 500 {
				return true
			}
		}
		return false
	}
	d.until(t, "a 500", func() bool { d.round(t); return seen500() })
	phase.Store("ok")
	d.until(t, "every event delivered", func() bool {
		d.round(t)
		return countDeliveries(t, pool, `state = 'delivered'`) == events
	})

	accepted := rc.Accepted()
	byID := map[string]int{}
	order := map[string][]string{}
	for _, r := range accepted {
		byID[r.ID]++
		order[r.LeadID] = append(order[r.LeadID], r.Type)
		if err := stdwebhook.Verify([]stdwebhook.Secret{secret}, r.ID, r.Timestamp, r.Signature, r.Body, time.Now(), 0); err != nil {
			t.Errorf("delivery %s does not verify: %v", r.ID, err)
		}
	}
	if len(byID) != events {
		t.Errorf("receiver accepted %d distinct events, want %d", len(byID), events)
	}
	for _, ld := range leads {
		got := strings.Join(order[ld.PublicID.String()], ",")
		if got != "lead.created,lead.confirmed,lead.unsubscribed" {
			t.Errorf("lead %s's events accepted in order %s", ld.PublicID, got)
		}
	}
	// Retries carried the same webhook-id (the receiver's idempotency key).
	ids := map[string]bool{}
	for _, r := range rc.Requests() {
		ids[r.ID] = true
	}
	if len(ids) != events {
		t.Errorf("receiver saw %d distinct webhook-ids over all attempts, want %d", len(ids), events)
	}
	counts, err := webhook.DeliveryCounts(context.Background(), pool)
	if err != nil || len(counts) != 1 || counts[0].Delivered != events || counts[0].Pending+counts[0].Failing+counts[0].Dead != 0 {
		t.Errorf("DeliveryCounts = %+v, %v", counts, err)
	}
	if st := d.d.Status(); !st.Running || st.Delivered != events || st.Failed == 0 {
		t.Errorf("Status = %+v", st)
	}
}

// TestGoneDisablesSubscription: a 410 disables the subscription and stops
// its deliveries; another subscription is unaffected.
func TestGoneDisablesSubscription(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	gone := webhooktest.New(t, func(webhooktest.Request) int { return http.StatusGone })
	fine := webhooktest.New(t, nil)
	goneSub := addSub(t, pool, gone.URL, "", webhook.Types...)
	fineSub := addSub(t, pool, fine.URL, "", webhook.Types...)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID},
		webhook.Event{Type: webhook.LeadConfirmed, PublicID: ld.PublicID})

	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: time.Second})
	d.until(t, "the 410 disabled the subscription and the other got both events", func() bool {
		d.round(t)
		s, err := webhook.Get(ctx, pool, goneSub.ID)
		return err == nil && s.DisabledAt != nil && len(fine.Accepted()) == 2
	})
	s, _ := webhook.Get(ctx, pool, goneSub.ID)
	if s.DisabledReason != "gone" {
		t.Errorf("disabled reason %q, want gone", s.DisabledReason)
	}
	if n := len(gone.Requests()); n != 1 {
		t.Errorf("gone receiver got %d requests, want 1 (the second event waited behind the first, then was cancelled)", n)
	}
	if n := countDeliveries(t, pool, `subscription_id = $1 AND state <> 'cancelled'`, goneSub.ID); n != 0 {
		t.Errorf("%d deliveries to the gone subscription are not cancelled", n)
	}
	// New events skip it.
	emit(t, pool, webhook.Event{Type: webhook.LeadUnsubscribed, PublicID: ld.PublicID})
	d.d.Wake()
	d.until(t, "the new event reached the other receiver", func() bool { d.round(t); return len(fine.Accepted()) == 3 })
	if n := len(gone.Requests()); n != 1 {
		t.Errorf("gone receiver got %d requests after it was disabled", n)
	}
	if n := countDeliveries(t, pool, `subscription_id = $1 AND state = 'delivered'`, fineSub.ID); n != 3 {
		t.Errorf("other subscription has %d delivered, want 3", n)
	}
}

// TestErasureBeatsPendingDelivery: a lead.created that still waits for
// its retry when the lead is erased is never sent; the receivers get
// lead.erased instead; the stored payloads no longer hold the address; and
// the erasure's record shows each receiver's delivery.
func TestErasureBeatsPendingDelivery(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	var erased atomic.Bool
	var leakedAfterErasure atomic.Int64
	failing := webhooktest.New(t, nil)
	failing.SetHandler(func(r webhooktest.Request) int {
		if erased.Load() && strings.Contains(string(r.Body), "ann@example.com") {
			leakedAfterErasure.Add(1)
		}
		if !erased.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	healthy := webhooktest.New(t, func(r webhooktest.Request) int {
		if erased.Load() && strings.Contains(string(r.Body), "ann@example.com") {
			leakedAfterErasure.Add(1)
		}
		return http.StatusNoContent
	})
	failingSub := addSub(t, pool, failing.URL, "", webhook.LeadCreated)
	healthySub := addSub(t, pool, healthy.URL, "", webhook.LeadCreated)
	bystander := addSub(t, pool, healthy.URL+"/other-property", "other.example", webhook.Types...)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})

	// A long backoff: after its first failure the failing delivery waits,
	// pending, well past the end of the test.
	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: time.Second, PollInterval: 10 * time.Millisecond,
		MinBackoff: time.Hour, MaxBackoff: time.Hour})
	d.until(t, "one delivery failed and one succeeded", func() bool {
		d.round(t)
		return len(failing.Requests()) == 1 && len(healthy.Accepted()) == 1
	})
	if n := countDeliveries(t, pool, `subscription_id = $1 AND state = 'failed'`, failingSub.ID); n != 1 {
		t.Fatalf("failing subscription has %d failed deliveries, want 1", n)
	}

	// The erasure, as the sync runs it.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tombstone int64
	if err := tx.QueryRow(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin') RETURNING id`,
		ld.EmailHMAC).Scan(&tombstone); err != nil {
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
	erased.Store(true)
	if res.EventsScrubbed != 1 || res.DeliveriesCancelled != 1 || res.ErasuresQueued != 2 {
		t.Errorf("EraseLead = %+v, want 1 event scrubbed, 1 delivery cancelled, 2 erasures queued", res)
	}

	d.d.Wake()
	d.until(t, "both receivers got lead.erased", func() bool {
		d.round(t)
		return countDeliveries(t, pool, `state = 'delivered' AND event_id IN (SELECT id FROM mailslot.webhook_events WHERE type = 'lead.erased')`) == 2
	})
	if n := leakedAfterErasure.Load(); n != 0 {
		t.Fatalf("%d requests carried the address after the erasure", n)
	}
	for _, rc := range []*webhooktest.Receiver{failing, healthy} {
		reqs := rc.Accepted()
		last := reqs[len(reqs)-1]
		if last.Type != "lead.erased" || last.LeadID != ld.PublicID.String() {
			t.Fatalf("last accepted request %s for lead %s, want lead.erased for %s", last.Type, last.LeadID, ld.PublicID)
		}
		got := data(t, last.Body)
		if len(got) != 3 || got["property"] != "site.example" || got["erased_at"] == nil {
			t.Errorf("lead.erased data = %v, want only id, property and erased_at", got)
		}
	}
	// The failing receiver never got lead.created once it recovered.
	for _, r := range failing.Accepted() {
		if r.Type == "lead.created" {
			t.Error("the failing receiver was sent lead.created after the erasure")
		}
	}
	var withEmail int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mailslot.webhook_events WHERE payload::text LIKE '%ann@example.com%' OR payload ? 'email' OR payload ? 'name'`).Scan(&withEmail); err != nil {
		t.Fatal(err)
	}
	if withEmail != 0 {
		t.Errorf("%d stored events still hold personal data", withEmail)
	}

	// The erasure's record: each receiver that had been sent (or was due)
	// the lead, and how its lead.erased went. The bystander subscription
	// (another property, never sent this lead) is not in it.
	rec, err := webhook.ErasureDeliveries(ctx, pool, tombstone)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 2 {
		t.Fatalf("erasure record has %d rows, want 2: %+v", len(rec), rec)
	}
	for _, r := range rec {
		if r.SubscriptionID == bystander.ID {
			t.Error("the erasure record names a subscription that was never sent the lead")
		}
		if r.SubscriptionID != failingSub.ID && r.SubscriptionID != healthySub.ID {
			t.Errorf("erasure record names subscription %s", r.SubscriptionID)
		}
		if r.State != "delivered" || r.DeliveredAt == nil || r.Attempts != 1 || r.LastStatus == nil || *r.LastStatus/100 != 2 ||
			r.LeadPublicID != ld.PublicID || *r.TombstoneID != tombstone || strings.Contains(r.Receiver, "?") {
			t.Errorf("erasure record row %+v", r)
		}
	}
	var cancelled string
	if err := pool.QueryRow(ctx, `SELECT state FROM mailslot.webhook_deliveries d JOIN mailslot.webhook_events e ON e.id = d.event_id
		WHERE e.type = 'lead.created' AND d.subscription_id = $1`, failingSub.ID).Scan(&cancelled); err != nil || cancelled != "cancelled" {
		t.Errorf("the pending lead.created is %q, %v; want cancelled", cancelled, err)
	}
}

// TestErasureOrderedAfterDeliveryInFlight: a lead.created on the wire
// when the erasure commits finishes first; lead.erased follows it, never
// overtakes it.
func TestErasureOrderedAfterDeliveryInFlight(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	rc := webhooktest.New(t, func(r webhooktest.Request) int {
		if r.Type == "lead.created" {
			arrived <- struct{}{}
			<-release
		}
		return http.StatusOK
	})
	addSub(t, pool, rc.URL, "", webhook.LeadCreated)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})
	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: 30 * time.Second, PollInterval: 10 * time.Millisecond})
	<-arrived

	// Erase while lead.created is held by the receiver.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.EraseLead(ctx, tx, ld.EmailHMAC); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A second deliverer, free to claim, must not send lead.erased yet.
	other := startDeliverer(t, webhook.Options{DB: pool, Owner: "other", PollInterval: 10 * time.Millisecond})
	for range 3 {
		if r := other.round(t); r.Claimed != 0 {
			t.Fatalf("lead.erased was claimed while lead.created was in flight: %+v", r)
		}
	}
	close(release)
	d.until(t, "lead.erased delivered", func() bool {
		return countDeliveries(t, pool, `state = 'delivered'`) == 1 && len(rc.Accepted()) == 2
	})
	got := rc.Accepted()
	if got[0].Type != "lead.created" || got[1].Type != "lead.erased" {
		t.Fatalf("receiver accepted %s then %s", got[0].Type, got[1].Type)
	}
	var state string
	var deliveredAt *time.Time
	if err := pool.QueryRow(ctx, `SELECT d.state, d.delivered_at FROM mailslot.webhook_deliveries d JOIN mailslot.webhook_events e ON e.id = d.event_id
		WHERE e.type = 'lead.created'`).Scan(&state, &deliveredAt); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || deliveredAt == nil {
		t.Errorf("the in-flight lead.created is %s (delivered at %v), want cancelled with its delivery time recorded", state, deliveredAt)
	}
}

type tableResolver map[string]string

func (r tableResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := r[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// TestSSRFRefused: private targets are refused when a subscription is
// added and, for one stored anyway (its name resolved elsewhere then),
// when a delivery connects.
func TestSSRFRefused(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	rc := webhooktest.New(t, nil)
	port := rc.URL[strings.LastIndexByte(rc.URL, ':')+1:]
	res := tableResolver{"loopback.example.com": "127.0.0.1", "hooks.example.com": "93.184.216.34"}
	prod := safedial.Policy{RequireHTTPS: true, Resolver: res}
	for _, raw := range []string{
		"https://127.0.0.1/hook",
		"https://169.254.169.254/latest/meta-data",
		"https://[::1]/hook",
		"https://10.0.0.1/hook",
		"https://loopback.example.com/hook",
	} {
		t.Run("add "+raw, func(t *testing.T) {
			_, err := webhook.Add(ctx, pool, webhook.NewSubscription{URL: raw, Events: webhook.Types, Policy: prod})
			if !errors.Is(err, safedial.ErrForbidden) {
				t.Fatalf("Add(%s) = %v, want ErrForbidden", raw, err)
			}
		})
	}
	if list, _ := webhook.List(ctx, pool); len(list) != 0 {
		t.Fatalf("refused subscriptions were stored: %+v", list)
	}

	// Stored behind the check's back: the deliverer's dialer refuses.
	for _, raw := range []string{"http://127.0.0.1:" + port + "/hook", "http://loopback.example.com:" + port + "/hook",
		"http://[::1]:" + port + "/hook", "http://169.254.169.254/latest", "http://10.0.0.1/hook"} {
		if _, err := pool.Exec(ctx, `INSERT INTO mailslot.webhook_subscriptions (url, events, secret) VALUES ($1, '{lead.created}', $2)`,
			raw, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
			t.Fatal(err)
		}
	}
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	if n := emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID}); n != 5 {
		t.Fatalf("queued %d deliveries, want 5", n)
	}
	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: time.Second, MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Client: safedial.New(safedial.Options{AllowHTTP: true, Resolver: res, Timeout: time.Second})})
	d.until(t, "every delivery attempted", func() bool { d.round(t); return countDeliveries(t, pool, `state = 'failed'`) == 5 })
	if n := len(rc.Requests()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	if n := countDeliveries(t, pool, `last_error LIKE '%address not allowed%'`); n != 5 {
		t.Errorf("%d deliveries failed for the address, want 5", n)
	}
}

// TestRotationSignsWithBothSecrets: during the overlap every delivery
// carries both signatures and the official library accepts it with
// either secret; after the overlap only the new secret signs.
func TestRotationSignsWithBothSecrets(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	rc := webhooktest.New(t, nil)
	sub := addSub(t, pool, rc.URL, "", webhook.Types...)
	newSecret, err := webhook.Rotate(ctx, pool, sub.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if newSecret == sub.Secret || !strings.HasPrefix(newSecret, "whsec_") {
		t.Fatalf("Rotate returned %q", newSecret)
	}
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})
	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: time.Second, PollInterval: 10 * time.Millisecond})
	d.until(t, "the delivery", func() bool { d.round(t); return len(rc.Accepted()) == 1 })
	r := rc.Accepted()[0]
	if n := len(strings.Fields(r.Signature)); n != 2 {
		t.Fatalf("webhook-signature has %d entries during the overlap, want 2: %q", n, r.Signature)
	}
	for name, secret := range map[string]string{"old": sub.Secret, "new": newSecret} {
		if err := stdwebhooktest.Verify(t, secret, r.ID, r.Timestamp, r.Signature, r.Body); err != nil {
			t.Errorf("official library with the %s secret: %v", name, err)
		}
	}

	// The overlap ends.
	if _, err := pool.Exec(ctx, `UPDATE mailslot.webhook_subscriptions SET previous_expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	emit(t, pool, webhook.Event{Type: webhook.LeadConfirmed, PublicID: ld.PublicID})
	d.d.Wake()
	d.until(t, "the second delivery", func() bool { d.round(t); return len(rc.Accepted()) == 2 })
	r = rc.Accepted()[1]
	if n := len(strings.Fields(r.Signature)); n != 1 {
		t.Fatalf("webhook-signature has %d entries after the overlap, want 1", n)
	}
	if err := stdwebhooktest.Verify(t, newSecret, r.ID, r.Timestamp, r.Signature, r.Body); err != nil {
		t.Errorf("official library with the new secret after the overlap: %v", err)
	}
	if err := stdwebhooktest.Verify(t, sub.Secret, r.ID, r.Timestamp, r.Signature, r.Body); err == nil {
		t.Error("the old secret still verifies after the overlap")
	}
}

// TestDeadAndRedeliver: a delivery that keeps failing past the retry
// window is dead, does not hold back the lead's later events, and
// Redeliver sends it again.
func TestDeadAndRedeliver(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	var down atomic.Bool
	down.Store(true)
	rc := webhooktest.New(t, func(r webhooktest.Request) int {
		if down.Load() {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	sub := addSub(t, pool, rc.URL, "", webhook.Types...)
	ld := insertLead(t, pool, "site.example", "ann@example.com")
	emit(t, pool, webhook.Event{Type: webhook.LeadCreated, PublicID: ld.PublicID})
	d := startDeliverer(t, webhook.Options{DB: pool, Timeout: time.Second, RetryWindow: time.Microsecond, PollInterval: 10 * time.Millisecond})
	d.until(t, "the delivery is dead", func() bool { d.round(t); return countDeliveries(t, pool, `state = 'dead'`) == 1 })
	var lastStatus int
	if err := pool.QueryRow(ctx, `SELECT last_status FROM mailslot.webhook_deliveries`).Scan(&lastStatus); err != nil || lastStatus != 502 {
		t.Errorf("last_status = %d, %v; want 502", lastStatus, err)
	}
	down.Store(false)
	emit(t, pool, webhook.Event{Type: webhook.LeadConfirmed, PublicID: ld.PublicID})
	d.d.Wake()
	d.until(t, "the later event delivered past the dead one", func() bool { d.round(t); return len(rc.Accepted()) == 1 })
	n, err := webhook.Redeliver(ctx, pool, sub.ID)
	if err != nil || n != 1 {
		t.Fatalf("Redeliver = %d, %v; want 1", n, err)
	}
	d.d.Wake()
	d.until(t, "the redelivered event", func() bool { d.round(t); return len(rc.Accepted()) == 2 })
	if got := rc.Accepted()[1].Type; got != "lead.created" {
		t.Errorf("redelivered %s, want lead.created", got)
	}
	if _, err := webhook.Redeliver(ctx, pool, uuid.New()); !errors.Is(err, webhook.ErrNotFound) {
		t.Errorf("Redeliver of an unknown subscription = %v", err)
	}
}
