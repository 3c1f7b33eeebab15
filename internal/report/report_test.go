package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/report/reporttest"
)

const (
	shop = "shop.example"
	blog = "blog.example"
)

var (
	news = reporttest.UTM{Source: "news", Medium: "email", Campaign: "spring"}
	ads  = reporttest.UTM{Source: "ads", Medium: "cpc", Campaign: "summer"}
)

// fixture is the sign-ups, consent changes and events below, with every
// expected number in the tests worked out by hand from them. D1 is ten
// days ago, D2 three (UTC), each at noon.
type fixture struct {
	d1, d2 time.Time
	emails []string
	names  []string
}

func (f fixture) day(t time.Time) string { return t.Format(time.DateOnly) }

func loadFixture(t *testing.T, db *pgxpool.Pool) fixture {
	t.Helper()
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC)
	f := fixture{d1: today.AddDate(0, 0, -10), d2: today.AddDate(0, 0, -3)}
	d1, d2, h := f.d1, f.d2, time.Hour
	leads := []reporttest.Lead{
		// shop, D1
		{Property: shop, Email: "ann@fixture.example", Name: "Ann Fixture", Page: "/pricing", First: news, Last: news, FirstSeen: d1,
			Basis: "express", ExpressAt: d1.Add(h), ConfirmedAt: d1.Add(h)}, // confirmed
		{Property: shop, Email: "bob@fixture.example", Name: "Bob Fixture", Page: "/pricing", First: news, Last: ads, FirstSeen: d1,
			Basis: "pending"}, // pending
		{Property: shop, Email: "cat@fixture.example", Name: "Cat Fixture", Page: "/", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1, WithdrawnAt: d1.Add(2 * h)}, // withdrawn + suppressed
		{Property: shop, Email: "hal@fixture.example", Name: "Hal Fixture", Page: "/pricing", FirstSeen: d1,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -200), ImpliedSource: "inquiry"}, // implied, lapsed
		{Property: shop, Email: "kit@fixture.example", Name: "Kit Fixture", Page: "/", FirstSeen: d1,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -200), ImpliedSource: "purchase"}, // implied, two years
		// shop, D2
		{Property: shop, Email: "dan@fixture.example", Name: "Dan Fixture", Page: "/pricing", First: ads, Last: ads, FirstSeen: d2,
			Basis: "implied", ImpliedAt: now.AddDate(0, 0, -170), ImpliedSource: "inquiry"}, // lapses in 13 days
		{Property: shop, Email: "eve@fixture.example", Name: "Eve Fixture", Page: "/", First: ads, Last: ads, FirstSeen: d2,
			Basis: "express", ExpressAt: d2, ConfirmedAt: d2}, // confirmed, then suppressed everywhere
		{Property: shop, Email: "fay@fixture.example", Name: "Fay Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "express", WithdrawnAt: d2, ExpressAt: d2.Add(5 * h), ConfirmedAt: d2.Add(5 * h)}, // confirmed after a suppression
		{Property: shop, Email: "gus@fixture.example", Name: "Gus Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "express", ExpressAt: d2}, // express claimed, never confirmed
		{Property: shop, Email: "joy@fixture.example", Name: "Joy Fixture", Page: "/pricing", FirstSeen: d2,
			Basis: "pending"}, // pending
		// blog, D1
		{Property: blog, Email: "ivy@fixture.example", Name: "Ivy Fixture", Page: "/post", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1.Add(h)},
		// erased below: counts nowhere
		{Property: shop, Email: "kim@fixture.example", Name: "Kim Fixture", Page: "/pricing", FirstSeen: d1,
			Basis: "express", ExpressAt: d1, ConfirmedAt: d1},
	}
	for _, l := range leads {
		reporttest.InsertLead(t, db, l)
		f.emails, f.names = append(f.emails, l.Email), append(f.names, l.Name)
	}
	reporttest.Suppress(t, db, "cat@fixture.example", shop, "unsubscribed", d1.Add(2*h))
	reporttest.Suppress(t, db, "eve@fixture.example", "", "unsubscribed", d2.Add(3*h))
	reporttest.Suppress(t, db, "fay@fixture.example", shop, "unsubscribed", d2)
	// An erasure deletes the lead (sync/drain/privacy.go) and leaves a
	// tombstone and a suppression for every property.
	ctx := context.Background()
	if _, err := db.Exec(ctx, `DELETE FROM mailslot.leads WHERE email_hmac = $1`, reporttest.Hash("kim@fixture.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`,
		reporttest.Hash("kim@fixture.example")); err != nil {
		t.Fatal(err)
	}
	reporttest.Suppress(t, db, "kim@fixture.example", "", "erased", now)

	reporttest.InsertEvents(t, db,
		reporttest.Event{Property: shop, Type: "page_view", Page: "/pricing", At: d1, N: 4},
		reporttest.Event{Property: shop, Type: "page_view", Page: "/", At: d1, N: 2},
		reporttest.Event{Property: shop, Type: "form_submit", Page: "/pricing", Outcome: "accepted", At: d1, N: 1},
		reporttest.Event{Property: shop, Type: "form_submit", Page: "/pricing", Outcome: "rejected", At: d1, N: 1},
		reporttest.Event{Property: shop, Type: "click", Page: "/pricing", At: d1, N: 1},
		reporttest.Event{Property: shop, Type: "page_view", Page: "/pricing", At: d2, N: 3},
		reporttest.Event{Property: shop, Type: "page_view", Page: "/", At: d2, N: 1},
		reporttest.Event{Property: shop, Type: "form_submit", Page: "/pricing", Outcome: "accepted", At: d2, N: 2},
		reporttest.Event{Property: shop, Type: "form_submit", Page: "/", Outcome: "accepted", At: d2, N: 1},
		reporttest.Event{Property: shop, Type: "custom", Page: "/", At: d2, N: 1},
		reporttest.Event{Property: blog, Type: "page_view", Page: "/post", At: d1, N: 5},
		reporttest.Event{Property: blog, Type: "form_submit", Page: "/post", Outcome: "accepted", At: d1, N: 1},
	)
	return f
}

func r(v float64) *float64 { return &v }
func n(v int64) *int64     { return &v }

// each runs check on the fixture twice: while every day is still marked
// dirty (the views compute it live) and after a refresh (from the
// rollups). Both must give the same numbers.
func each(t *testing.T, check func(t *testing.T, db *pgxpool.Pool, f fixture)) {
	db := pgtest.New(t)
	f := loadFixture(t, db)
	t.Run("live", func(t *testing.T) { check(t, db, f) })
	res, err := report.Refresh(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	// shop D1, shop D2, blog D1 for both kinds.
	if res.LeadDays != 3 || res.EventDays != 3 {
		t.Errorf("Refresh = %+v, want 3 lead days and 3 event days", res)
	}
	t.Run("rolled up", func(t *testing.T) { check(t, db, f) })
	if res, err := report.Refresh(context.Background(), db); err != nil || res != (report.RefreshResult{}) {
		t.Errorf("second Refresh = %+v, %v; want nothing to do", res, err)
	}
}

func TestCampaigns(t *testing.T) {
	each(t, func(t *testing.T, db *pgxpool.Pool, f fixture) {
		tests := []struct {
			name   string
			filter report.Filter
			want   []report.CampaignRow
		}{
			{"first touch, all time", report.Filter{}, []report.CampaignRow{
				{Property: shop, Touch: "first", Signups: 6, Confirmed: 1, Unconfirmed: 4, Withdrawn: 1, Suppressed: 1, ConfirmRate: r(0.1667)},
				{Property: shop, Touch: "first", Source: "ads", Medium: "cpc", Campaign: "summer", Signups: 2, Confirmed: 1, Unconfirmed: 1, Suppressed: 1, ConfirmRate: r(0.5)},
				{Property: shop, Touch: "first", Source: "news", Medium: "email", Campaign: "spring", Signups: 2, Confirmed: 1, Unconfirmed: 1, ConfirmRate: r(0.5)},
				{Property: blog, Touch: "first", Signups: 1, Confirmed: 1, ConfirmRate: r(1)},
			}},
			{"last touch", report.Filter{Touch: report.TouchLast}, []report.CampaignRow{
				{Property: shop, Touch: "last", Signups: 6, Confirmed: 1, Unconfirmed: 4, Withdrawn: 1, Suppressed: 1, ConfirmRate: r(0.1667)},
				{Property: shop, Touch: "last", Source: "ads", Medium: "cpc", Campaign: "summer", Signups: 3, Confirmed: 1, Unconfirmed: 2, Suppressed: 1, ConfirmRate: r(0.3333)},
				{Property: blog, Touch: "last", Signups: 1, Confirmed: 1, ConfirmRate: r(1)},
				{Property: shop, Touch: "last", Source: "news", Medium: "email", Campaign: "spring", Signups: 1, Confirmed: 1, ConfirmRate: r(1)},
			}},
			{"since D2", report.Filter{Since: f.d2}, []report.CampaignRow{
				{Property: shop, Touch: "first", Signups: 3, Confirmed: 1, Unconfirmed: 2, ConfirmRate: r(0.3333)},
				{Property: shop, Touch: "first", Source: "ads", Medium: "cpc", Campaign: "summer", Signups: 2, Confirmed: 1, Unconfirmed: 1, Suppressed: 1, ConfirmRate: r(0.5)},
			}},
			{"blog only", report.Filter{Property: blog}, []report.CampaignRow{
				{Property: blog, Touch: "first", Signups: 1, Confirmed: 1, ConfirmRate: r(1)},
			}},
			{"until D1", report.Filter{Property: shop, Until: f.d1}, []report.CampaignRow{
				{Property: shop, Touch: "first", Signups: 3, Unconfirmed: 2, Withdrawn: 1, Suppressed: 1, ConfirmRate: r(0)},
				{Property: shop, Touch: "first", Source: "news", Medium: "email", Campaign: "spring", Signups: 2, Confirmed: 1, Unconfirmed: 1, ConfirmRate: r(0.5)},
			}},
			{"empty range", report.Filter{Since: f.d1.AddDate(0, 0, 1), Until: f.d1.AddDate(0, 0, 2)}, []report.CampaignRow{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := report.Campaigns(context.Background(), db, tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Campaigns:\n got %s\nwant %s", js(got), js(tt.want))
				}
			})
		}
	})
}

func TestPagesAndFunnel(t *testing.T) {
	each(t, func(t *testing.T, db *pgxpool.Pool, f fixture) {
		ctx := context.Background()
		pages, err := report.Pages(ctx, db, report.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		wantPages := []report.PageRow{
			{Property: shop, Page: "/pricing", FunnelCounts: report.FunnelCounts{PageViews: 7, FormSubmits: 4, FormAccepted: 3, Signups: 7, Confirmed: 2,
				SubmitRate: r(0.5714), AcceptRate: r(1.75), SignupRate: r(1), ConfirmRate: r(0.2857)}},
			{Property: blog, Page: "/post", FunnelCounts: report.FunnelCounts{PageViews: 5, FormSubmits: 1, FormAccepted: 1, Signups: 1, Confirmed: 1,
				SubmitRate: r(0.2), AcceptRate: r(1), SignupRate: r(0.2), ConfirmRate: r(1)}},
			{Property: shop, Page: "/", FunnelCounts: report.FunnelCounts{PageViews: 3, FormSubmits: 1, FormAccepted: 1, Signups: 3, Confirmed: 1,
				SubmitRate: r(0.3333), AcceptRate: r(3), SignupRate: r(1), ConfirmRate: r(0.3333)}},
		}
		if !reflect.DeepEqual(pages, wantPages) {
			t.Errorf("Pages:\n got %s\nwant %s", js(pages), js(wantPages))
		}

		funnel, err := report.Funnel(ctx, db, report.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		wantFunnel := []report.FunnelRow{
			{Day: f.day(f.d1), Property: blog, FunnelCounts: report.FunnelCounts{PageViews: 5, FormSubmits: 1, FormAccepted: 1, Signups: 1, Confirmed: 1,
				SubmitRate: r(0.2), AcceptRate: r(1), SignupRate: r(0.2), ConfirmRate: r(1)}},
			{Day: f.day(f.d1), Property: shop, FunnelCounts: report.FunnelCounts{PageViews: 6, FormSubmits: 2, FormAccepted: 1, Signups: 5, Confirmed: 1,
				SubmitRate: r(0.3333), AcceptRate: r(2.5), SignupRate: r(0.8333), ConfirmRate: r(0.2)}},
			{Day: f.day(f.d2), Property: shop, FunnelCounts: report.FunnelCounts{PageViews: 4, FormSubmits: 3, FormAccepted: 3, Signups: 5, Confirmed: 2,
				SubmitRate: r(0.75), AcceptRate: r(1.6667), SignupRate: r(1.25), ConfirmRate: r(0.4)}},
		}
		if !reflect.DeepEqual(funnel, wantFunnel) {
			t.Errorf("Funnel:\n got %s\nwant %s", js(funnel), js(wantFunnel))
		}

		only, err := report.Funnel(ctx, db, report.Filter{Property: shop, Since: f.d2, Until: f.d2})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(only, wantFunnel[2:]) {
			t.Errorf("Funnel of shop on D2:\n got %s\nwant %s", js(only), js(wantFunnel[2:]))
		}
	})
}

func TestConsent(t *testing.T) {
	each(t, func(t *testing.T, db *pgxpool.Pool, f fixture) {
		got, err := report.Consent(context.Background(), db, report.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		want := []report.ConsentRow{
			{Property: blog, Signups: 1, Confirmed: 1, ConfirmationRate: r(1), UnsubscribeRate: r(0)},
			// pending: bob (10 days), joy (3 days); confirmed: ann, eve,
			// fay; withdrawn: cat; suppressed: cat, eve; implied: hal
			// (inquiry, 200 days: lapsed), kit (purchase, 200 days: two
			// years), dan (inquiry, 170 days: lapses in 13).
			{Property: shop, Signups: 10, Pending: 2, PendingMedianAgeDays: n(3), PendingMaxAgeDays: n(10),
				Confirmed: 3, ConfirmationRate: r(0.3), Withdrawn: 1, UnsubscribeRate: r(0.1), Suppressed: 2,
				Implied: 3, ImpliedLapsing30d: 1, ImpliedLapsed: 1},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Consent:\n got %s\nwant %s", js(got), js(want))
		}
		shopOnly, err := report.Consent(context.Background(), db, report.Filter{Property: shop})
		if err != nil || len(shopOnly) != 1 || shopOnly[0].Property != shop {
			t.Errorf("Consent of shop = %s, %v", js(shopOnly), err)
		}
	})
}

// TestConsentLapseRules counts implied consents lapsing and lapsed by the
// period of each lead's latest implied consent record: two years for a
// purchase, customer or ebr source, six months otherwise, including a
// lead whose records changed from one kind of source to the other.
func TestConsentLapseRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	now := time.Now().UTC()
	const p = "lapse.example"
	days := func(d int) time.Time { return now.AddDate(0, 0, -d) }
	implied := func(email string, at int, source string) int64 {
		return reporttest.InsertLead(t, db, reporttest.Lead{Property: p, Email: email, Basis: "implied",
			FirstSeen: days(at), ImpliedAt: days(at), ImpliedSource: source})
	}
	record := func(id int64, email, source string, at int) {
		t.Helper()
		if _, err := db.Exec(ctx, `
			INSERT INTO mailslot.consent_records (lead_id, submission_id, email_hmac, property, status, source, recorded_at, origin_node, origin_seq)
			VALUES ($1::bigint, gen_random_uuid(), $2, $3, 'implied', $4, $5, 'fixture', $1::bigint + 1000)`,
			id, reporttest.Hash(email), p, source, days(at)); err != nil {
			t.Fatal(err)
		}
	}
	implied("a@example.com", 160, "inquiry")  // six months: lapses in 23 days
	implied("b@example.com", 200, "inquiry")  // lapsed 17 days ago
	implied("c@example.com", 200, "purchase") // two years: neither
	implied("d@example.com", 710, "customer") // lapses in 20 days
	implied("e@example.com", 740, "ebr")      // lapsed 10 days ago
	// An older two-year record, then a newer inquiry: six months.
	f := implied("f@example.com", 170, "inquiry")
	record(f, "f@example.com", "purchase", 400) // lapses in 13 days
	// An older inquiry, then a newer purchase: two years.
	g := implied("g@example.com", 190, "purchase")
	record(g, "g@example.com", "inquiry", 300) // neither
	implied("h@example.com", 100, "inquiry")   // neither
	// Withdrawn since: not implied, counted in neither.
	reporttest.InsertLead(t, db, reporttest.Lead{Property: p, Email: "i@example.com", Basis: "implied",
		FirstSeen: days(160), ImpliedAt: days(160), WithdrawnAt: days(1), ImpliedSource: "inquiry"})

	got, err := report.Consent(ctx, db, report.Filter{Property: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Consent = %s, want one row", js(got))
	}
	if c := got[0]; c.Implied != 8 || c.ImpliedLapsing30d != 3 || c.ImpliedLapsed != 2 {
		t.Errorf("implied %d, lapsing in 30 days %d, lapsed %d; want 8 (a-h), 3 (a, d, f), 2 (b, e)",
			c.Implied, c.ImpliedLapsing30d, c.ImpliedLapsed)
	}
}

func TestSignupsDailyView(t *testing.T) {
	each(t, func(t *testing.T, db *pgxpool.Pool, f fixture) {
		rows, err := db.Query(context.Background(), `
			SELECT to_char(day, 'YYYY-MM-DD'), property, concat_ws('/', first_source, first_medium, first_campaign),
			       concat_ws('/', last_source, last_medium, last_campaign), signups, confirmed, unconfirmed, withdrawn, suppressed
			FROM mailslot.report_signups_daily ORDER BY 1, 2, 3, 4`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var d, p, first, last string
			var s, c, u, w, x int64
			if err := rows.Scan(&d, &p, &first, &last, &s, &c, &u, &w, &x); err != nil {
				t.Fatal(err)
			}
			got = append(got, strings.Join([]string{d, p, first, last, itoa(s), itoa(c), itoa(u), itoa(w), itoa(x)}, " "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		d1, d2 := f.day(f.d1), f.day(f.d2)
		want := []string{
			d1 + " blog.example   1 1 0 0 0",
			d1 + " shop.example   3 0 2 1 1",
			d1 + " shop.example news/email/spring ads/cpc/summer 1 0 1 0 0",
			d1 + " shop.example news/email/spring news/email/spring 1 1 0 0 0",
			d2 + " shop.example   3 1 2 0 0",
			d2 + " shop.example ads/cpc/summer ads/cpc/summer 2 1 1 0 1",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("report_signups_daily:\n got %q\nwant %q", got, want)
		}
	})
}

func TestFunnelDailyView(t *testing.T) {
	each(t, func(t *testing.T, db *pgxpool.Pool, f fixture) {
		rows, err := db.Query(context.Background(), `
			SELECT to_char(day, 'YYYY-MM-DD') || ' ' || property || ' ' || coalesce(page, '-') || ' ' ||
			       concat_ws(' ', page_views, form_submits, form_accepted, signups, confirmed,
			                 coalesce(submit_rate::text, 'null'), coalesce(accept_rate::text, 'null'),
			                 coalesce(signup_rate::text, 'null'), coalesce(confirm_rate::text, 'null'))
			FROM mailslot.report_funnel_daily ORDER BY day, property, page`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		d1, d2 := f.day(f.d1), f.day(f.d2)
		want := []string{
			d1 + " blog.example /post 5 1 1 1 1 0.2000 1.0000 0.2000 1.0000",
			d1 + " shop.example / 2 0 0 2 0 0.0000 null 1.0000 0.0000",
			d1 + " shop.example /pricing 4 2 1 3 1 0.5000 1.5000 0.7500 0.3333",
			d2 + " shop.example / 1 1 1 1 1 1.0000 1.0000 1.0000 1.0000",
			d2 + " shop.example /pricing 3 2 2 4 1 0.6667 2.0000 1.3333 0.2500",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("report_funnel_daily:\n got %q\nwant %q", got, want)
		}
	})
}

func TestImagesMonthly(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `
		INSERT INTO mailslot.image_jobs (source, image_url, state, max_attempts, submitted_by, created_at)
		VALUES ('url', 'https://img.example/a.jpg', 'succeeded', 3, 'operator', date_trunc('month', now(), 'UTC') + interval '1 hour'),
		       ('url', 'https://img.example/b.jpg', 'queued', 3, 'operator', date_trunc('month', now(), 'UTC') + interval '2 hours'),
		       ('url', 'https://img.example/c.jpg', 'dead', 3, 'operator', date_trunc('month', now(), 'UTC') - interval '1 day');
		INSERT INTO mailslot.image_spend (provider, prediction_id, predict_seconds, cost_usd, recorded_at)
		VALUES ('replicate', 'p1', 40, 0.01, date_trunc('month', now(), 'UTC') + interval '1 hour'),
		       ('replicate', 'p2', 80, 0.02, date_trunc('month', now(), 'UTC') + interval '2 hours')`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	this := now.Format("2006-01")
	last := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0).Format("2006-01")
	got, err := report.Images(ctx, db, report.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []report.ImageRow{
		{Month: last, Jobs: 1, Dead: 1},
		{Month: this, Jobs: 2, Queued: 1, Succeeded: 1, Predictions: 2, PredictSeconds: 120, SpendUSD: 0.03},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Images without a budget:\n got %s\nwant %s", js(got), js(want))
	}
	// The budget from the database setting, then from the caller.
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET mailslot.image_monthly_budget_usd = '10'`); err != nil {
		t.Fatal(err)
	}
	got, err = report.Images(ctx, conn, report.Filter{Since: now}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want = []report.ImageRow{{Month: this, Jobs: 2, Queued: 1, Succeeded: 1, Predictions: 2, PredictSeconds: 120, SpendUSD: 0.03,
		BudgetUSD: r(10), BudgetUsed: r(0.003)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Images with the setting:\n got %s\nwant %s", js(got), js(want))
	}
	got, err = report.Images(ctx, conn, report.Filter{Since: now}, 0.06)
	if err != nil || len(got) != 1 || *got[0].BudgetUSD != 0.06 || *got[0].BudgetUsed != 0.5 {
		t.Errorf("Images with budget 0.06 = %s, %v; want half used", js(got), err)
	}
	if _, err := conn.Exec(ctx, `SET mailslot.image_monthly_budget_usd = 'lots'`); err != nil {
		t.Fatal(err)
	}
	got, err = report.Images(ctx, conn, report.Filter{Since: now}, 0)
	if err != nil || len(got) != 1 || got[0].BudgetUSD != nil {
		t.Errorf("Images with a setting that is not a number = %s, %v; want no budget", js(got), err)
	}
	if _, err := report.Images(ctx, db, report.Filter{Property: shop}, 0); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("Images with a property: %v, want ErrInvalid", err)
	}
}

// TestViewsHoldNoPersonalData looks through every column of every report
// view for the fixture's addresses, names and address hashes, and for any
// bytea column at all.
func TestViewsHoldNoPersonalData(t *testing.T) {
	db := pgtest.New(t)
	f := loadFixture(t, db)
	ctx := context.Background()
	views := []string{"report_signups_daily", "report_funnel_daily", "report_consent", "report_images_monthly"}
	var listed []string
	rows, err := db.Query(ctx, `SELECT table_name FROM information_schema.views WHERE table_schema = 'mailslot' AND table_name LIKE 'report\_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		_ = rows.Scan(&v)
		listed = append(listed, v)
	}
	if !reflect.DeepEqual(listed, []string{"report_consent", "report_funnel_daily", "report_images_monthly", "report_signups_daily"}) {
		t.Fatalf("report views = %v; a new one must be added to this test", listed)
	}
	for _, refreshed := range []bool{false, true} {
		if refreshed {
			if _, err := report.Refresh(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range views {
			var bytea int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'mailslot' AND table_name = $1 AND data_type = 'bytea'`, v).Scan(&bytea); err != nil || bytea != 0 {
				t.Errorf("%s has %d bytea columns (%v)", v, bytea, err)
			}
			var dump string
			if err := db.QueryRow(ctx, `SELECT coalesce(string_agg(to_jsonb(v)::text, E'\n'), '') FROM mailslot.`+v+` v`).Scan(&dump); err != nil {
				t.Fatal(err)
			}
			if v != "report_images_monthly" && dump == "" {
				t.Errorf("%s is empty: the search below would prove nothing", v)
			}
			for i, e := range f.emails {
				local := strings.SplitN(e, "@", 2)[0]
				for _, needle := range []string{e, local + "@", "fixture.example", f.names[i], hex.EncodeToString(reporttest.Hash(e))} {
					if strings.Contains(strings.ToLower(dump), strings.ToLower(needle)) {
						t.Errorf("%s (refreshed %v) shows %q", v, refreshed, needle)
					}
				}
			}
		}
	}
}

// TestReportingRoleReadsOnlyTheViews connects as mailslot_reporting (the
// migration creates it; grants.sql grants it the views).
func TestReportingRoleReadsOnlyTheViews(t *testing.T) {
	db := pgtest.New(t)
	loadFixture(t, db)
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE mailslot_reporting`); err != nil {
		t.Fatalf("mailslot_reporting missing: %v", err)
	}
	for _, q := range []string{`SELECT 1 FROM mailslot.report_signups_daily`, `SELECT 1 FROM mailslot.report_funnel_daily`,
		`SELECT 1 FROM mailslot.report_consent`, `SELECT 1 FROM mailslot.report_images_monthly`} {
		if _, err := tx.Exec(ctx, `SAVEPOINT s`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Errorf("as mailslot_reporting, %s: %v", q, err)
		}
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT s`); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{`SELECT email FROM mailslot.leads`, `SELECT 1 FROM mailslot.lead_states`, `SELECT 1 FROM mailslot.suppressions`,
		`SELECT 1 FROM mailslot.events`, `SELECT 1 FROM mailslot.exports`, `SELECT * FROM mailslot.refresh_reports()`,
		`INSERT INTO mailslot.rollup_dirty (kind, day, property) VALUES ('lead', now(), 'x')`} {
		if _, err := tx.Exec(ctx, `SAVEPOINT s`); err != nil {
			t.Fatal(err)
		}
		_, err := tx.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("as mailslot_reporting, %s: %v; want permission denied", q, err)
		}
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT s`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRollupFollowsChanges changes leads after a refresh and wants the
// views to show it at once (the changed day is computed live) and after
// the next refresh.
func TestRollupFollowsChanges(t *testing.T) {
	db := pgtest.New(t)
	f := loadFixture(t, db)
	ctx := context.Background()
	if _, err := report.Refresh(ctx, db); err != nil {
		t.Fatal(err)
	}
	confirmed := func() int64 {
		t.Helper()
		rows, err := report.Campaigns(ctx, db, report.Filter{Property: shop, Until: f.d1})
		if err != nil {
			t.Fatal(err)
		}
		var c int64
		for _, r := range rows {
			c += r.Confirmed
		}
		return c
	}
	if c := confirmed(); c != 1 {
		t.Fatalf("shop D1 confirmed = %d, want 1 (ann)", c)
	}
	// bob confirms; ann unsubscribes (the sync's withdrawal and suppression).
	steps := []string{
		`UPDATE mailslot.leads SET consent_basis = 'express', express_at = now(), confirmed_at = now(), confirm_issued_at = now() WHERE email = 'bob@fixture.example'`,
		`UPDATE mailslot.leads SET withdrawn_at = now() + interval '1 second' WHERE email = 'ann@fixture.example'`,
	}
	for _, s := range steps {
		if _, err := db.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if c := confirmed(); c != 1 {
		t.Errorf("after bob confirmed and ann withdrew, before a refresh: confirmed = %d, want 1 (bob)", c)
	}
	reporttest.Suppress(t, db, "bob@fixture.example", "", "unsubscribed", time.Now().Add(time.Minute))
	if res, err := report.Refresh(ctx, db); err != nil || res.LeadDays != 1 {
		t.Errorf("Refresh = %+v, %v; want the one changed lead day", res, err)
	}
	if c := confirmed(); c != 1 {
		t.Errorf("after refresh: confirmed = %d, want 1 (bob: a suppression does not withdraw)", c)
	}
	got, err := report.Consent(ctx, db, report.Filter{Property: shop})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Pending != 1 || got[0].Withdrawn != 2 || got[0].Suppressed != 3 {
		t.Errorf("Consent after changes = %s; want pending 1 (joy), withdrawn 2 (ann, cat), suppressed 3 (bob, cat, eve)", js(got))
	}
}

func TestFormats(t *testing.T) {
	rows := []report.CampaignRow{
		{Property: shop, Touch: "first", Source: "=HYPERLINK(\"x\")", Signups: 3, Confirmed: 1, Unconfirmed: 2, ConfirmRate: r(0.3333)},
		{Property: shop, Touch: "first", Signups: 0},
	}
	var b bytes.Buffer
	if err := report.Write(&b, report.FormatTable, rows); err != nil {
		t.Fatal(err)
	}
	wantTable := "" +
		"PROPERTY      TOUCH  SOURCE           MEDIUM  CAMPAIGN  SIGNUPS  CONFIRMED  UNCONFIRMED  WITHDRAWN  SUPPRESSED  CONFIRM RATE\n" +
		"shop.example  first  =HYPERLINK(\"x\")  -       -               3          1            2          0           0         33.3%\n" +
		"shop.example  first  -                -       -               0          0            0          0           0             -\n"
	if b.String() != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), wantTable)
	}

	b.Reset()
	if err := report.Write(&b, report.FormatCSV, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantCSV := [][]string{
		{"property", "touch", "source", "medium", "campaign", "signups", "confirmed", "unconfirmed", "withdrawn", "suppressed", "confirm_rate"},
		{shop, "first", "'=HYPERLINK(\"x\")", "", "", "3", "1", "2", "0", "0", "0.3333"},
		{shop, "first", "", "", "", "0", "0", "0", "0", "0", ""},
	}
	if !reflect.DeepEqual(recs, wantCSV) {
		t.Errorf("csv = %q, want %q", recs, wantCSV)
	}

	b.Reset()
	if err := report.Write(&b, report.FormatJSON, rows); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0]["source"] != "=HYPERLINK(\"x\")" || back[0]["confirm_rate"] != 0.3333 || back[1]["confirm_rate"] != nil {
		t.Errorf("json = %s", b.String())
	}

	b.Reset()
	if err := report.Write(&b, report.FormatJSON, []report.ConsentRow(nil)); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("json of no rows = %q, %v; want []", b.String(), err)
	}
	b.Reset()
	if err := report.Write(&b, report.FormatTable, []report.FunnelRow(nil)); err != nil || !strings.HasSuffix(b.String(), "(no rows)\n") {
		t.Errorf("table of no rows = %q, %v", b.String(), err)
	}
	if err := report.Write(&b, report.Format("xml"), rows); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("Write xml: %v, want ErrInvalid", err)
	}
}

// TestEveryReportInEveryFormat renders the fixture's reports in each
// format and checks what a reader of each would see.
func TestEveryReportInEveryFormat(t *testing.T) {
	db := pgtest.New(t)
	loadFixture(t, db)
	ctx := context.Background()
	camp, err := report.Campaigns(ctx, db, report.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := report.Pages(ctx, db, report.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	fun, err := report.Funnel(ctx, db, report.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := report.Consent(ctx, db, report.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	render := func(f report.Format) map[string]string {
		out := map[string]string{}
		for name, w := range map[string]func(*bytes.Buffer) error{
			"campaigns": func(b *bytes.Buffer) error { return report.Write(b, f, camp) },
			"pages":     func(b *bytes.Buffer) error { return report.Write(b, f, pages) },
			"funnel":    func(b *bytes.Buffer) error { return report.Write(b, f, fun) },
			"consent":   func(b *bytes.Buffer) error { return report.Write(b, f, cons) },
		} {
			var b bytes.Buffer
			if err := w(&b); err != nil {
				t.Fatalf("%s as %s: %v", name, f, err)
			}
			out[name] = b.String()
		}
		return out
	}
	for name, s := range render(report.FormatCSV) {
		recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
		if err != nil {
			t.Fatalf("%s csv: %v", name, err)
		}
		want := map[string]int{"campaigns": 4, "pages": 3, "funnel": 3, "consent": 2}[name]
		if len(recs) != want+1 {
			t.Errorf("%s csv has %d records, want header + %d", name, len(recs), want)
		}
	}
	if s := render(report.FormatCSV)["consent"]; !strings.Contains(s, "shop.example,10,2,3,10,3,0.3,1,0.1,2,3,1,1\n") {
		t.Errorf("consent csv lacks the shop row:\n%s", s)
	}
	for name, s := range render(report.FormatJSON) {
		var v []map[string]any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Errorf("%s json: %v", name, err)
		}
	}
	if s := render(report.FormatJSON)["pages"]; !strings.Contains(s, `"page": "/pricing"`) || !strings.Contains(s, `"accept_rate": 1.75`) {
		t.Errorf("pages json:\n%s", s)
	}
	tables := render(report.FormatTable)
	if !strings.Contains(tables["funnel"], "57.1%") && !strings.Contains(tables["funnel"], "33.3%") {
		t.Errorf("funnel table shows no percentages:\n%s", tables["funnel"])
	}
	if !strings.Contains(tables["consent"], "PENDING MEDIAN AGE DAYS") {
		t.Errorf("consent table header:\n%s", tables["consent"])
	}
}

func TestBadInput(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now()
	if _, err := report.Campaigns(ctx, db, report.Filter{Since: now, Until: now.AddDate(0, 0, -2)}); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("until before since: %v", err)
	}
	if _, err := report.Campaigns(ctx, db, report.Filter{Touch: "middle"}); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("touch middle: %v", err)
	}
	if _, err := report.Consent(ctx, db, report.Filter{Since: now}); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("consent with since: %v", err)
	}
	for in, want := range map[string]report.Format{"": report.FormatTable, "CSV": report.FormatCSV, "json": report.FormatJSON, "jsonl": report.FormatJSON} {
		if got, err := report.ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := report.ParseFormat("yaml"); !errors.Is(err, report.ErrInvalid) || !strings.Contains(err.Error(), "want table, csv or json") {
		t.Errorf("ParseFormat(yaml) = %v", err)
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
