package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/sync/drain"
)

func partitionNames(t *testing.T, db report.DB) []string {
	t.Helper()
	parts, err := report.EventPartitions(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range parts {
		names = append(names, p.Name)
	}
	return names
}

func TestMigrateEnsuresEventPartitionsAhead(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	first := time.Now().UTC().AddDate(0, 0, 1-time.Now().UTC().Day())
	var ahead []string
	for i := 1; i <= drain.EventMonthsAhead; i++ {
		ahead = append(ahead, first.AddDate(0, i, 0).Format("events_2006_01"))
	}
	for _, name := range ahead {
		if _, err := pool.Exec(context.Background(), fmt.Sprintf(`ALTER TABLE mailslot.events DETACH PARTITION mailslot.%s; DROP TABLE mailslot.%[1]s`, name)); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, err := ctl(t, nil, "migrate", "--database-url", dbURL)
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, stderr)
	}
	if want := fmt.Sprintf("created %d monthly event partition(s) ahead\n", len(ahead)); !strings.HasPrefix(out, want) {
		t.Errorf("migrate printed %q, want it to start %q", out, want)
	}
	names := partitionNames(t, pool)
	for _, name := range ahead {
		if !slices.Contains(names, name) {
			t.Errorf("partitions %v, want %s", names, name)
		}
	}
	// Again: nothing to make, nothing said.
	if out, _, err := ctl(t, nil, "migrate", "--database-url", dbURL); err != nil || strings.Contains(out, "partition") {
		t.Errorf("second migrate: %v\n%s", err, out)
	}
}

func TestPurgeEventsDropsWholeMonths(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	now := time.Now().UTC()
	month := func(ago int) time.Time { // the 15th of the month ago months back
		return time.Date(now.Year(), now.Month(), 15, 12, 0, 0, 0, time.UTC).AddDate(0, -ago, 0)
	}
	if _, err := report.EnsureEventPartitions(ctx, pool, month(14), 15); err != nil {
		t.Fatal(err)
	}
	// Three events in each of the months 14, 13 and 12 back, two a month
	// ago, one today.
	for i, at := range []time.Time{month(14), month(14), month(14), month(13), month(13), month(13), month(12), month(12), month(12), month(1), month(1), now} {
		if _, err := pool.Exec(ctx, `
			INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
			VALUES ($1, 'shop.example', 'page_view', $2, '{}', 'test', $3)`, uuid.New(), at, i); err != nil {
			t.Fatal(err)
		}
	}
	// The cutoff falls on the 20th of the month 12 back: months 14 and
	// 13 go whole; of month 12 only the rows before the 20th (all three,
	// from the 15th), as row deletes.
	cutoff := month(12).AddDate(0, 0, 5)
	olderThan := fmt.Sprintf("%dh", int(now.Sub(cutoff).Hours()))
	out, stderr, err := ctl(t, nil, "purge-events", "--older-than", olderThan, "--dry-run", "--database-url", dbURL)
	if err != nil || !strings.Contains(out, "would purge 9 event(s)") || !strings.Contains(out, "(2 whole monthly partition(s))") {
		t.Fatalf("dry run: %v\n%s%s", err, out, stderr)
	}
	before := partitionNames(t, pool)
	gone := []string{month(14).Format("events_2006_01"), month(13).Format("events_2006_01")}
	for _, g := range gone {
		if !slices.Contains(before, g) {
			t.Fatalf("partitions %v lack %s before the purge", before, g)
		}
	}
	out, stderr, err = ctl(t, nil, "purge-events", "--older-than", olderThan, "--database-url", dbURL)
	if err != nil || !strings.Contains(out, "purged 9 event(s)") || !strings.Contains(out, "2 whole monthly partition(s) dropped, 3 row(s) of "+month(12).Format("2006-01")) {
		t.Fatalf("purge: %v\n%s%s", err, out, stderr)
	}
	after := partitionNames(t, pool)
	for _, g := range gone {
		if slices.Contains(after, g) {
			t.Errorf("partition %s still there after the purge: %v", g, after)
		}
	}
	if !slices.Contains(after, month(12).Format("events_2006_01")) {
		t.Errorf("the cutoff's month was dropped: %v", after)
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mailslot.events`).Scan(&left); err != nil || left != 3 {
		t.Errorf("%d events left (%v), want the 3 of the last month and today", left, err)
	}
	var records, rows int64
	var at time.Time
	if err := pool.QueryRow(ctx, `SELECT count(*), max(rows), max(cutoff) FROM mailslot.purges WHERE what = 'events'`).Scan(&records, &rows, &at); err != nil {
		t.Fatal(err)
	}
	if records != 1 || rows != 9 || at.Sub(cutoff).Abs() > time.Hour {
		t.Errorf("purges: %d record(s), %d rows, cutoff %s; want one of 9 rows at %s", records, rows, at, cutoff)
	}
}
