package drain_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/sync/drain"
)

// Scrub completeness: after an erasure, nothing in schema mailslot may
// still hold the address, its hash (outside tombstones and suppressions),
// the person's name or their IP hash. The columns are discovered from
// information_schema at test time, so a table or column added later is
// searched without anyone remembering to add it here.

// hashHolders are the only tables where an erased address's hash may stay:
// they exist to remember it.
var hashHolders = []string{"tombstones", "suppressions"}

// column is one searchable column of schema mailslot.
type column struct{ table, name, dataType string }

// mailslotColumns lists every column of every base table in schema
// mailslot.
func mailslotColumns(t *testing.T, pool *pgxpool.Pool) []column {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT c.table_name, c.column_name, c.data_type
		FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = 'mailslot' AND tb.table_type = 'BASE TABLE'
		ORDER BY 1, c.ordinal_position`)
	if err != nil {
		t.Fatalf("list columns: %v", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.table, &c.name, &c.dataType)
		return c, err
	})
	if err != nil {
		t.Fatalf("list columns: %v", err)
	}
	return cols
}

// needles are what a search looks for: text (case-insensitively, in any
// column that is not bytea, through its text form, so jsonb members, arrays
// and varchar are covered) and byte strings (anywhere inside a bytea
// column).
type needles struct {
	text  []string
	bytes map[string][]byte // name → value
}

// findTraces returns "table.column" → rows for every column holding a
// needle, with the needle that matched.
func findTraces(t *testing.T, pool *pgxpool.Pool, n needles) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	found := map[string]int64{}
	cols := mailslotColumns(t, pool)
	for _, c := range cols {
		from := pgx.Identifier{"mailslot", c.table}.Sanitize()
		col := pgx.Identifier{c.name}.Sanitize()
		var checks []struct {
			what, sql string
			arg       any
		}
		if c.dataType == "bytea" {
			for name, b := range n.bytes {
				checks = append(checks, struct {
					what, sql string
					arg       any
				}{name, fmt.Sprintf(`SELECT count(*) FROM %s WHERE position($1::bytea IN %s) > 0`, from, col), b})
			}
		} else {
			for _, s := range n.text {
				checks = append(checks, struct {
					what, sql string
					arg       any
				}{s, fmt.Sprintf(`SELECT count(*) FROM %s WHERE strpos(lower(%s::text), lower($1)) > 0`, from, col), s})
			}
		}
		for _, ch := range checks {
			var rows int64
			if err := pool.QueryRow(ctx, ch.sql, ch.arg).Scan(&rows); err != nil {
				t.Fatalf("search %s.%s: %v", c.table, c.name, err)
			}
			if rows > 0 {
				found[fmt.Sprintf("%s.%s (%s)", c.table, c.name, ch.what)] = rows
			}
		}
	}
	return found
}

func tracesIn(found map[string]int64, prefix string) bool {
	for k := range found {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func TestScrubCompleteness(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"erasure request synced from an edge", "drain.Erase (mailslotctl erase)"} {
		t.Run(how, func(t *testing.T) {
			db := newPG(t)
			a, late := newPrivEdge(t, "edge-a"), newPrivEdge(t, "edge-late")
			const aliceIP, bobIP = "198.51.100.7", "203.0.113.9"
			aliceSub := fullProfile(a, alice, "Alice Liddell", aliceIP, 0)
			fullProfile(a, bob, "Bob Builder", bobIP, 10)
			// Props that carry an address are refused at the edge, so
			// they never need scrubbing.
			if w := a.serve(a.Public, "POST", "/v1/events", "application/json",
				`{"type":"custom","property":"shop.example","props":{"contact":"`+alice+`"}}`, aliceIP); w.Code != 422 {
				t.Fatalf("event with the address in props: status %d, want 422 (%s)", w.Code, w.Body)
			}
			// Another edge holds a sign-up and an event captured before the
			// erasure, and syncs only after it.
			late.at(minute(20))
			lateSub := late.signUp(aliceIP, map[string]any{"email": alice, "property": shop, "consent": "express",
				"name": "Alice L.", "utm": map[string]string{"campaign": "late"}})
			late.event(aliceIP, map[string]any{"type": "form_submit", "property": shop, "submission_id": lateSub})
			a.sync(db.url)

			look := needles{
				text: []string{alice, "Alice Liddell", "Alice L."},
				bytes: map[string][]byte{
					"email hash": privHasher.Email(alice),
					"IP hash":    privHasher.IP(aliceIP),
				},
			}
			bobLook := needles{text: []string{bob, "Bob Builder"},
				bytes: map[string][]byte{"email hash": privHasher.Email(bob), "IP hash": privHasher.IP(bobIP)}}

			// The search must see the data before it can prove it gone.
			before := findTraces(t, db.pool, look)
			for _, want := range []string{
				"leads.email (" + alice + ")", "leads.name (Alice Liddell)", "leads.email_hmac (email hash)",
				"consent_records.email_hmac (email hash)", "consent_records.ip_hmac (IP hash)",
				"events.ip_hmac (IP hash)", "suppressions.email_hmac (email hash)",
			} {
				if before[want] == 0 {
					t.Errorf("before the erasure the search does not find %s; it found %v", want, before)
				}
			}
			for k := range before {
				if strings.HasPrefix(k, "events.payload") || strings.HasPrefix(k, "leads.first_page") || strings.HasPrefix(k, "leads.first_referrer") {
					t.Errorf("the edge let the address into %s", k)
				}
			}
			bobBefore, bobTraces := bobRows(db), findTraces(t, db.pool, bobLook)

			a.at(minute(30))
			switch how {
			case "erasure request synced from an edge":
				a.eraseAdmin(alice)
				a.sync(db.url)
			default:
				if _, err := drain.Erase(context.Background(), db.pool, privHasher.Email(alice), minute(30), "operator"); err != nil {
					t.Fatal(err)
				}
			}
			late.sync(db.url)

			after := findTraces(t, db.pool, look)
			for k, n := range after {
				allowed := strings.HasSuffix(k, "(email hash)") && slices.ContainsFunc(hashHolders, func(tb string) bool { return strings.HasPrefix(k, tb+".") })
				if !allowed {
					t.Errorf("after the erasure %s still holds it in %d row(s)", k, n)
				}
			}
			for _, tb := range hashHolders {
				if !tracesIn(after, tb+".email_hmac") {
					t.Errorf("no %s entry for the erased address", tb)
				}
			}
			for _, sub := range []string{aliceSub, lateSub} {
				if n := db.int(`SELECT count(*) FROM mailslot.events WHERE lead_submission = $1 OR payload::text LIKE '%' || $1 || '%'`, sub); n != 0 {
					t.Errorf("%d events still name the erased sign-up %s", n, sub)
				}
			}
			if n := db.int(`SELECT count(*) FROM mailslot.events`); n != 5 {
				t.Errorf("%d events after the erasure, want all 5 kept as anonymous telemetry", n)
			}
			equalRows(t, "bob's rows", bobBefore, bobRows(db))
			if got := findTraces(t, db.pool, bobLook); fmt.Sprint(got) != fmt.Sprint(bobTraces) {
				t.Errorf("bob's traces changed:\nbefore %v\nafter  %v", bobTraces, got)
			}
		})
	}
}
