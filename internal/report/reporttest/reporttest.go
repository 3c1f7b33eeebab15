// Package reporttest writes leads, consent, suppressions and events into
// Postgres with plain SQL, as the sync would have left them, for the
// report tests and benchmarks.
package reporttest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// UTM is a touch's source, medium and campaign.
type UTM struct{ Source, Medium, Campaign string }

func (u UTM) json() any {
	if u == (UTM{}) {
		return nil
	}
	b, _ := json.Marshal(map[string]string{"source": u.Source, "medium": u.Medium, "campaign": u.Campaign})
	return string(b)
}

// Lead is one lead row. Times left zero are NULL.
type Lead struct {
	Property, Email, Name, Page string
	Basis                       string // pending, implied, express
	FirstSeen                   time.Time
	First, Last                 UTM
	ExpressAt, ImpliedAt        time.Time
	WithdrawnAt, ConfirmedAt    time.Time
	// ImpliedSource, when set, adds the implied consent record the
	// lapse rules read its source from.
	ImpliedSource string
}

// Hash stands in for the HMAC of an address.
func Hash(email string) []byte {
	h := sha256.Sum256([]byte(email))
	return h[:]
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// InsertLead writes l and returns its id.
func InsertLead(tb testing.TB, db *pgxpool.Pool, l Lead) int64 {
	tb.Helper()
	ctx := context.Background()
	var id int64
	err := db.QueryRow(ctx, `
		INSERT INTO mailslot.leads (property, email, email_hmac, name, consent_basis, express_at, implied_at, withdrawn_at,
		    confirmed_at, confirm_issued_at, first_seen_at, first_utm, first_page, last_seen_at, last_utm, last_page)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11::jsonb, $12, $10, $13::jsonb, $12)
		RETURNING id`,
		l.Property, l.Email, Hash(l.Email), nullText(l.Name), l.Basis, nullTime(l.ExpressAt), nullTime(l.ImpliedAt),
		nullTime(l.WithdrawnAt), nullTime(l.ConfirmedAt), l.FirstSeen, l.First.json(), nullText(l.Page), l.Last.json()).Scan(&id)
	if err != nil {
		tb.Fatalf("insert lead: %v", err)
	}
	if l.ImpliedSource != "" {
		if _, err := db.Exec(ctx, `
			INSERT INTO mailslot.consent_records (lead_id, submission_id, email_hmac, property, status, source, recorded_at, origin_node, origin_seq)
			VALUES ($1, gen_random_uuid(), $2, $3, 'implied', $4, $5, 'fixture', $1)`,
			id, Hash(l.Email), l.Property, l.ImpliedSource, l.ImpliedAt); err != nil {
			tb.Fatalf("insert consent record: %v", err)
		}
	}
	return id
}

// Suppress writes a suppression of email for property (” for all).
func Suppress(tb testing.TB, db *pgxpool.Pool, email, property, reason string, at time.Time) {
	tb.Helper()
	if _, err := db.Exec(context.Background(), `INSERT INTO mailslot.suppressions (email_hmac, property, reason, created_at) VALUES ($1, $2, $3, $4)`,
		Hash(email), property, reason, at); err != nil {
		tb.Fatalf("insert suppression: %v", err)
	}
}

// Event is n identical telemetry events.
type Event struct {
	Property, Type, Page, Outcome string
	At                            time.Time
	N                             int
}

// InsertEvents writes the events, each with its own submission id, in one
// statement as a sync batch would.
func InsertEvents(tb testing.TB, db *pgxpool.Pool, evs ...Event) {
	tb.Helper()
	for _, e := range evs {
		p := map[string]any{"type": e.Type, "property": e.Property}
		if e.Page != "" {
			p["page"] = e.Page
		}
		if e.Outcome != "" {
			p["props"] = map[string]any{"outcome": e.Outcome}
		}
		payload, _ := json.Marshal(p)
		if _, err := db.Exec(context.Background(), `
			INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
			SELECT gen_random_uuid(), $1, $2, $3, $4::jsonb, 'fixture', g FROM generate_series(1, $5::int) g`,
			e.Property, e.Type, e.At, string(payload), e.N); err != nil {
			tb.Fatalf("insert events: %v", err)
		}
	}
}

// Bulk loads leads leads and events events spread over the last year
// (set-based, generate_series), with a realistic spread of properties,
// pages, campaigns and consent, for the report benchmarks.
func Bulk(tb testing.TB, db *pgxpool.Pool, leads, events int) {
	tb.Helper()
	ctx := context.Background()
	stmts := []struct {
		what string
		sql  string
		n    int
	}{
		{"leads", `
			INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, express_at, implied_at, withdrawn_at,
			    confirmed_at, confirm_issued_at, first_seen_at, first_utm, first_page, last_seen_at, last_utm, last_page)
			SELECT 'p' || (g % 3) || '.example', 'bulk' || g || '@bulk.example', sha256(('bulk' || g)::bytea),
			       CASE WHEN g % 10 < 3 THEN 'pending' WHEN g % 10 < 4 THEN 'implied' ELSE 'express' END,
			       CASE WHEN g % 10 >= 4 THEN t END,
			       CASE WHEN g % 10 = 3 THEN t END,
			       CASE WHEN g % 20 = 19 THEN t + interval '3 days' END,
			       CASE WHEN g % 10 >= 5 THEN t + interval '1 hour' END,
			       CASE WHEN g % 10 >= 5 THEN t + interval '1 hour' END,
			       t,
			       jsonb_build_object('source', 's' || (g % 5), 'medium', 'm' || (g % 3), 'campaign', 'c' || (g % 10)),
			       '/page/' || (g % 50),
			       t,
			       CASE WHEN g % 5 = 0 THEN jsonb_build_object('source', 's' || ((g / 5) % 5), 'medium', 'm' || (g % 3), 'campaign', 'c' || ((g / 5) % 10))
			            ELSE jsonb_build_object('source', 's' || (g % 5), 'medium', 'm' || (g % 3), 'campaign', 'c' || (g % 10)) END,
			       '/page/' || (g % 50)
			FROM (SELECT g, now() - (g % 365) * interval '1 day' - (g % 86400) * interval '1 second' AS t
			      FROM generate_series(1, $1::int) g) x`, leads},
		{"suppressions", `
			INSERT INTO mailslot.suppressions (email_hmac, property, reason, created_at)
			SELECT sha256(('bulk' || g)::bytea), '', 'unsubscribed', now()
			FROM generate_series(1, $1::int) g WHERE g % 50 = 7`, leads},
		{"events", `
			INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
			SELECT gen_random_uuid(), 'p' || (g % 3) || '.example',
			       CASE WHEN g % 20 = 0 THEN 'form_submit' WHEN g % 20 = 1 THEN 'click' ELSE 'page_view' END,
			       now() - (g % 365) * interval '1 day' - (g % 86400) * interval '1 second',
			       jsonb_build_object('type', CASE WHEN g % 20 = 0 THEN 'form_submit' WHEN g % 20 = 1 THEN 'click' ELSE 'page_view' END,
			                          'page', '/page/' || (g % 50),
			                          'utm', jsonb_build_object('source', 's' || (g % 5), 'campaign', 'c' || (g % 10)),
			                          'props', CASE WHEN g % 20 = 0 THEN jsonb_build_object('outcome', 'accepted') END),
			       'bulk', g
			FROM generate_series($2::int, $1::int) g`, events},
	}
	// The year back needs its monthly partitions, as the migration makes
	// them for data already there; the rest would sit in the default.
	if _, err := db.Exec(ctx, `SELECT mailslot.ensure_event_partitions((now() - interval '13 months')::date, 17)`); err != nil {
		tb.Fatalf("bulk load: ensure partitions: %v", err)
	}
	// A million rows per statement, as a long sync would bring them in
	// batches, keeps each statement's transition table bounded.
	const chunk = 1_000_000
	for _, s := range stmts {
		start := time.Now()
		for lo := 1; lo <= s.n; lo += chunk {
			hi := min(lo+chunk-1, s.n)
			sql := s.sql
			if !strings.Contains(sql, "$2") {
				if lo > 1 {
					break
				}
				hi = s.n
			}
			args := []any{hi}
			if strings.Contains(sql, "$2") {
				args = append(args, lo)
			}
			if _, err := db.Exec(ctx, sql, args...); err != nil {
				tb.Fatalf("bulk load %s: %v", s.what, err)
			}
		}
		tb.Logf("loaded %d %s in %s", s.n, s.what, time.Since(start).Round(time.Millisecond))
	}
	if _, err := db.Exec(ctx, `ANALYZE mailslot.leads; ANALYZE mailslot.events; ANALYZE mailslot.suppressions; ANALYZE mailslot.rollup_dirty`); err != nil {
		tb.Fatalf("analyze: %v", err)
	}
}
