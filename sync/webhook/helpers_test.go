package webhook_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/sync/webhook"
)

type lead struct {
	PublicID  uuid.UUID
	Property  string
	Email     string
	EmailHMAC []byte
}

func hmacOf(email string) []byte {
	h := sha256.Sum256([]byte("test-pepper:" + email))
	return h[:]
}

// insertLead writes a lead the way the sync leaves one (the columns the
// webhook payloads read).
func insertLead(t testing.TB, pool *pgxpool.Pool, property, email string) lead {
	t.Helper()
	l := lead{Property: property, Email: email, EmailHMAC: hmacOf(email)}
	err := pool.QueryRow(context.Background(), `
INSERT INTO mailslot.leads (property, email, email_hmac, name, consent_basis, express_at, first_seen_at, first_utm, first_page,
                            last_seen_at, last_utm, last_page)
VALUES ($1, $2, $3, 'Ann Example', 'express', now() - interval '1 hour', now() - interval '1 hour',
        '{"utm_source":"news","utm_campaign":"spring"}', '/signup', now() - interval '1 hour', NULL, '/signup')
RETURNING public_id`, property, email, l.EmailHMAC).Scan(&l.PublicID)
	if err != nil {
		t.Fatalf("insert lead: %v", err)
	}
	return l
}

// dev is the URL policy of tests that deliver to loopback receivers.
var dev = safedial.Policy{AllowPrivate: true}

func addSub(t testing.TB, pool *pgxpool.Pool, url string, property string, types ...webhook.Type) webhook.Created {
	t.Helper()
	c, err := webhook.Add(context.Background(), pool, webhook.NewSubscription{URL: url, Events: types, Property: property, Policy: dev})
	if err != nil {
		t.Fatalf("add subscription: %v", err)
	}
	return c
}

func emit(t testing.TB, pool *pgxpool.Pool, evs ...webhook.Event) int64 {
	t.Helper()
	n, err := webhook.Emit(context.Background(), pool, evs...)
	if err != nil {
		t.Fatalf("emit: %v", err)
	}
	return n
}

// running is a deliverer running in the background whose rounds a test
// can wait on.
type running struct {
	d      *webhook.Deliverer
	rounds chan webhook.Round
}

func startDeliverer(t testing.TB, o webhook.Options) *running {
	t.Helper()
	r := &running{rounds: make(chan webhook.Round, 1024)}
	o.OnRound = func(round webhook.Round) {
		select {
		case r.rounds <- round:
		default: // a test that stopped listening does not stall the deliverer
		}
	}
	if o.Client == nil {
		o.Client = safedial.New(safedial.Options{AllowPrivate: true, AllowHTTP: true, Timeout: o.Timeout})
	}
	o.PollInterval = max(o.PollInterval, 10*time.Millisecond)
	o.MinBackoff = max(o.MinBackoff, time.Millisecond)
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	d, err := webhook.NewDeliverer(o)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// until waits, round by round, for cond; it fails the test after a
// generous bound so that a broken deliverer cannot hang the suite.
func (r *running) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !cond() {
		select {
		case round := <-r.rounds:
			if round.Err != nil {
				t.Logf("round error: %v", round.Err)
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// round waits for the next round and returns it.
func (r *running) round(t testing.TB) webhook.Round {
	t.Helper()
	select {
	case round := <-r.rounds:
		return round
	case <-time.After(60 * time.Second):
		t.Fatal("timed out waiting for a delivery round")
		return webhook.Round{}
	}
}

func countDeliveries(t testing.TB, pool *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.webhook_deliveries WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count deliveries: %v", err)
	}
	return n
}

func data(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return env.Data
}

func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return pgtest.New(t)
}
