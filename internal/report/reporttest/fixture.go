package reporttest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Fixture properties and campaigns.
const (
	Shop = "shop.example"
	Blog = "blog.example"
)

var (
	News = UTM{Source: "news", Medium: "email", Campaign: "spring"}
	Ads  = UTM{Source: "ads", Medium: "cpc", Campaign: "summer"}
)

// Fixture is what LoadFixture wrote: D1 is ten days ago and D2 three days
// ago (UTC), each at noon. The numbers it yields are worked out by hand in
// internal/report's tests (report_test.go holds the same rows), so any
// other reader of the reports (the CLI, the dashboard) can assert them.
type Fixture struct {
	D1, D2 time.Time
	Emails []string
}

// Day is t as the reports print a day.
func (f Fixture) Day(t time.Time) string { return t.Format(time.DateOnly) }

// LoadFixture writes eleven live leads in two properties (confirmed,
// pending, withdrawn, suppressed, implied with and without a lapse), one
// erased lead (deleted, with its tombstone and suppression) and the page
// views and form submits of both days.
func LoadFixture(tb testing.TB, db *pgxpool.Pool) Fixture {
	tb.Helper()
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC)
	f := Fixture{D1: today.AddDate(0, 0, -10), D2: today.AddDate(0, 0, -3)}
	d1, d2, h := f.D1, f.D2, time.Hour
	leads := []Lead{
		{Property: Shop, Email: "ann@fixture.example", Name: "Ann Fixture", Page: "/pricing", First: News, Last: News, FirstSeen: d1,
			Basis: "express", ExpressAt: d1.Add(h), ConfirmedAt: d1.Add(h)},
		{Property: Shop, Email: "bob@fixture.example", Name: "Bob Fixture", Page: "/pricing", First: News, Last: Ads, FirstSeen: d1,
			Basis: "pending"},
		{Property: Shop, Email: "cat@fixture.example", Name: "Cat Fixture", Page: "/", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1, WithdrawnAt: d1.Add(2 * h)},
		{Property: Shop, Email: "hal@fixture.example", Name: "Hal Fixture", Page: "/pricing", FirstSeen: d1,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -200), ImpliedSource: "inquiry"},
		{Property: Shop, Email: "kit@fixture.example", Name: "Kit Fixture", Page: "/", FirstSeen: d1,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -200), ImpliedSource: "purchase"},
		{Property: Shop, Email: "dan@fixture.example", Name: "Dan Fixture", Page: "/pricing", First: Ads, Last: Ads, FirstSeen: d2,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -170), ImpliedSource: "inquiry"},
		{Property: Shop, Email: "eve@fixture.example", Name: "Eve Fixture", Page: "/", First: Ads, Last: Ads, FirstSeen: d2,
			Basis: "express", ExpressAt: d2, ConfirmedAt: d2},
		{Property: Shop, Email: "fay@fixture.example", Name: "Fay Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "express", WithdrawnAt: d2, ExpressAt: d2.Add(5 * h), ConfirmedAt: d2.Add(5 * h)},
		{Property: Shop, Email: "gus@fixture.example", Name: "Gus Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "express", ExpressAt: d2},
		{Property: Shop, Email: "joy@fixture.example", Name: "Joy Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "pending"},
		{Property: Blog, Email: "ivy@fixture.example", Name: "Ivy Fixture", Page: "/post", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1.Add(h)},
		{Property: Shop, Email: "kim@fixture.example", Name: "Kim Fixture", Page: "/pricing", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1},
	}
	for _, l := range leads {
		InsertLead(tb, db, l)
		f.Emails = append(f.Emails, l.Email)
	}
	Suppress(tb, db, "cat@fixture.example", Shop, "unsubscribed", d1.Add(2*h))
	Suppress(tb, db, "eve@fixture.example", "", "unsubscribed", d2.Add(3*h))
	Suppress(tb, db, "fay@fixture.example", Shop, "unsubscribed", d2)
	// kim is erased as the sync erases: the lead deleted, a tombstone and
	// a suppression for every property left.
	ctx := context.Background()
	if _, err := db.Exec(ctx, `DELETE FROM mailslot.leads WHERE email_hmac = $1`, Hash("kim@fixture.example")); err != nil {
		tb.Fatalf("erase fixture lead: %v", err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`,
		Hash("kim@fixture.example")); err != nil {
		tb.Fatalf("insert fixture tombstone: %v", err)
	}
	Suppress(tb, db, "kim@fixture.example", "", "erased", now)

	InsertEvents(tb, db,
		Event{Property: Shop, Type: "page_view", Page: "/pricing", At: d1, N: 4},
		Event{Property: Shop, Type: "page_view", Page: "/", At: d1, N: 2},
		Event{Property: Shop, Type: "form_submit", Page: "/pricing", Outcome: "accepted", At: d1, N: 1},
		Event{Property: Shop, Type: "form_submit", Page: "/pricing", Outcome: "rejected", At: d1, N: 1},
		Event{Property: Shop, Type: "click", Page: "/pricing", At: d1, N: 1},
		Event{Property: Shop, Type: "page_view", Page: "/pricing", At: d2, N: 3},
		Event{Property: Shop, Type: "page_view", Page: "/", At: d2, N: 1},
		Event{Property: Shop, Type: "form_submit", Page: "/pricing", Outcome: "accepted", At: d2, N: 2},
		Event{Property: Shop, Type: "form_submit", Page: "/", Outcome: "accepted", At: d2, N: 1},
		Event{Property: Shop, Type: "custom", Page: "/", At: d2, N: 1},
		Event{Property: Blog, Type: "page_view", Page: "/post", At: d1, N: 5},
		Event{Property: Blog, Type: "form_submit", Page: "/post", Outcome: "accepted", At: d1, N: 1},
	)
	return f
}
