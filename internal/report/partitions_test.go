package report_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/pgschema"
)

// migrateTo applies the embedded migrations up to version v by hand, as
// pgschema.Migrate would have when v was the newest.
func migrateTo(t *testing.T, conn *pgx.Conn, v int) {
	t.Helper()
	ctx := context.Background()
	ms, err := pgschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA mailslot; CREATE TABLE mailslot.schema_version (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:v] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("apply %s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO mailslot.schema_version (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPartitionMigrationKeepsEveryRow builds a database at migration 010,
// fills its events across months, migrates, and wants every row, id and
// link back, in monthly partitions, with the sequence continuing.
func TestPartitionMigrationKeepsEveryRow(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewEmptyURL(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	migrateTo(t, conn, 10)

	now := time.Now().UTC()
	thisMonth := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	// Five months back to this one, a few rows each; one lead linked.
	var leadID int64
	if err := conn.QueryRow(ctx, `INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('p', 'x@example.com', '\x01', 'pending', now(), now()) RETURNING id`).Scan(&leadID); err != nil {
		t.Fatal(err)
	}
	const perMonth = 7
	for m := -5; m <= 0; m++ {
		at := thisMonth.AddDate(0, m, 3)
		if _, err := conn.Exec(ctx, `
			INSERT INTO mailslot.events (submission_id, lead_id, lead_submission, property, type, received_at, payload, ip_hmac, origin_node, origin_seq)
			SELECT gen_random_uuid(), CASE WHEN g = 1 THEN $3::bigint END, CASE WHEN g = 1 THEN gen_random_uuid() END, 'p', 'page_view',
			       $1::timestamptz + g * interval '1 hour', '{"page":"/x"}', '\x02', 'node', $2::int * 100 + g
			FROM generate_series(1, $4::int) g`, at, m+10, leadID, perMonth); err != nil {
			t.Fatal(err)
		}
	}
	// A deleted row: the id sequence must not go back to it.
	if _, err := conn.Exec(ctx, `DELETE FROM mailslot.events WHERE id = (SELECT max(id) FROM mailslot.events)`); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		var s string
		if err := conn.QueryRow(ctx, `SELECT string_agg(to_jsonb(e)::text, E'\n' ORDER BY id) FROM mailslot.events e`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()
	var lastID int64
	if err := conn.QueryRow(ctx, `SELECT last_value FROM mailslot.events_id_seq`).Scan(&lastID); err != nil {
		t.Fatal(err)
	}

	res, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		t.Fatalf("Migrate 010 -> latest: %v", err)
	}
	if res.From != 10 || len(res.Applied) == 0 || res.Applied[0] != "011_reports" {
		t.Fatalf("Migrate = %+v", res)
	}
	if after := snapshot(); after != before {
		t.Errorf("events changed by the migration:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	var kind string
	if err := conn.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'mailslot.events'::regclass`).Scan(&kind); err != nil || kind != "p" {
		t.Fatalf("mailslot.events relkind %q, %v; want a partitioned table", kind, err)
	}
	parts, err := report.EventPartitions(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	// Six months of data through three ahead, then the default.
	if len(parts) != 10 || !parts[9].Default {
		t.Fatalf("partitions = %+v", parts)
	}
	for i, p := range parts[:9] {
		from := thisMonth.AddDate(0, i-5, 0)
		if !p.From.Equal(from) || !p.To.Equal(from.AddDate(0, 1, 0)) || p.Name != fmt.Sprintf("events_%04d_%02d", from.Year(), from.Month()) {
			t.Errorf("partition %d = %+v, want %s", i, p, from.Format("2006-01"))
		}
	}
	var inDefault, inMonths int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.events_default), (SELECT count(*) FROM mailslot.events WHERE tableoid <> 'mailslot.events_default'::regclass)`).
		Scan(&inDefault, &inMonths); err != nil {
		t.Fatal(err)
	}
	if inDefault != 0 || inMonths != 6*perMonth-1 {
		t.Errorf("rows in default %d, in months %d; want 0 and %d", inDefault, inMonths, 6*perMonth-1)
	}
	// New rows continue the old sequence, and the link to the lead still
	// follows an erasure (ON DELETE SET NULL).
	var newID int64
	if err := conn.QueryRow(ctx, `INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
		VALUES (gen_random_uuid(), 'p', 'click', now(), '{}', 'node', 9999) RETURNING id`).Scan(&newID); err != nil {
		t.Fatal(err)
	}
	if newID != lastID+1 {
		t.Errorf("new event id %d, want %d (after the old sequence's %d)", newID, lastID+1, lastID)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM mailslot.leads WHERE id = $1`, leadID); err != nil {
		t.Fatal(err)
	}
	var linked int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL`).Scan(&linked); err != nil || linked != 0 {
		t.Errorf("events still linked to an erased lead: %d, %v", linked, err)
	}
	// A replayed row (same submission, same receive time) is still refused.
	_, err = conn.Exec(ctx, `INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
		SELECT submission_id, property, type, received_at, payload, origin_node, origin_seq FROM mailslot.events WHERE id = $1`, newID)
	if err == nil {
		t.Error("a replayed event was stored twice")
	}
	// The rollups start from the rows that were there.
	var views int64
	if err := conn.QueryRow(ctx, `SELECT sum(page_views) FROM mailslot.report_funnel_daily`).Scan(&views); err != nil || views != 6*perMonth-1 {
		t.Errorf("page views in the funnel = %d, %v; want %d", views, err, 6*perMonth-1)
	}
}

func TestEnsureEventPartitions(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	far := time.Date(2040, 2, 10, 0, 0, 0, 0, time.UTC)
	// A row far ahead lands in the default partition, and moves to its
	// month when the month is created.
	if _, err := db.Exec(ctx, `INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
		VALUES (gen_random_uuid(), 'p', 'page_view', $1, '{}', 'n', 1)`, far.Add(36*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := report.EnsureEventPartitions(ctx, db, far, 3)
	if err != nil || n != 3 {
		t.Fatalf("EnsureEventPartitions = %d, %v; want 3", n, err)
	}
	if n, err := report.EnsureEventPartitions(ctx, db, far.AddDate(0, 1, 0), 3); err != nil || n != 1 {
		t.Errorf("again, one month further = %d, %v; want only the one new month", n, err)
	}
	var part string
	if err := db.QueryRow(ctx, `SELECT tableoid::regclass::text FROM mailslot.events WHERE received_at >= $1`, far).Scan(&part); err != nil || part != "mailslot.events_2040_02" {
		t.Errorf("far row is in %q, %v; want mailslot.events_2040_02", part, err)
	}
	if _, err := report.EnsureEventPartitions(ctx, db, far, 0); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("0 months: %v", err)
	}
}

// TestPurgeEventPartitions drops whole months older than the cutoff,
// keeps the rest, and records the purge.
func TestPurgeEventPartitions(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := report.EnsureEventPartitions(ctx, db, base, 4); err != nil {
		t.Fatal(err)
	}
	// 2020-01: 3 rows, 2020-02: 2, 2020-03: 4, and 1 in the default
	// partition (2019-06, no month for it).
	for _, x := range []struct {
		at time.Time
		n  int
	}{{base.AddDate(0, 0, 5), 3}, {base.AddDate(0, 1, 5), 2}, {base.AddDate(0, 2, 5), 4}, {base.AddDate(0, -7, 0), 1}} {
		if _, err := db.Exec(ctx, `INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
			SELECT gen_random_uuid(), 'p', 'page_view', $1, '{"page":"/"}', 'n', g FROM generate_series(1, $2::int) g`, x.at, x.n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := report.Refresh(ctx, db); err != nil {
		t.Fatal(err)
	}
	// Cutoff mid-March: January and February go, March stays whole.
	cutoff := base.AddDate(0, 2, 14)
	dry, err := report.PurgeEventPartitions(ctx, db, cutoff, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	want := report.PurgeResult{Partitions: 2, Rows: 6, Before: base.AddDate(0, 2, 0), DryRun: true}
	if dry != want {
		t.Errorf("dry run = %+v, want %+v", dry, want)
	}
	var events, purges int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.events), (SELECT count(*) FROM mailslot.purges)`).Scan(&events, &purges); err != nil || events != 10 || purges != 0 {
		t.Fatalf("after dry run: %d events, %d purges (%v)", events, purges, err)
	}
	got, err := report.PurgeEventPartitions(ctx, db, cutoff, "test:operator", false)
	if err != nil {
		t.Fatal(err)
	}
	want.DryRun = false
	if got != want {
		t.Errorf("purge = %+v, want %+v", got, want)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM mailslot.events`).Scan(&events); err != nil || events != 4 {
		t.Errorf("events left %d (%v), want March's 4", events, err)
	}
	for _, name := range []string{"events_2020_01", "events_2020_02"} {
		var exists bool
		if err := db.QueryRow(ctx, `SELECT to_regclass('mailslot.' || $1) IS NOT NULL`, name).Scan(&exists); err != nil || exists {
			t.Errorf("%s still exists (%v)", name, err)
		}
	}
	var what, by string
	var rows int64
	var at time.Time
	if err := db.QueryRow(ctx, `SELECT what, cutoff, rows, purged_by FROM mailslot.purges`).Scan(&what, &at, &rows, &by); err != nil {
		t.Fatal(err)
	}
	if what != "events" || !at.Equal(base.AddDate(0, 2, 0)) || rows != 6 || by != "test:operator" {
		t.Errorf("purge record = %s %s %d %s", what, at, rows, by)
	}
	// The rollups keep the purged months' counts.
	var views int64
	if err := db.QueryRow(ctx, `SELECT sum(page_views) FROM mailslot.report_funnel_daily`).Scan(&views); err != nil || views != 10 {
		t.Errorf("page views in the funnel after the purge = %d, %v; want all 10", views, err)
	}
	if _, err := report.PurgeEventPartitions(ctx, db, cutoff, "", false); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("purge without who: %v", err)
	}
}
