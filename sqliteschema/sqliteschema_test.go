package sqliteschema

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	_ "modernc.org/sqlite"
)

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "outbox.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func indexes(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM pragma_index_list('outbox') ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

// TestIDNotUniqueKeepsRowsAndSequence upgrades a version 1 file whose
// highest rows were pruned: every row and column survives, the indexes are
// the partial ones only, and seq continues past the pruned rows.
func TestIDNotUniqueKeepsRowsAndSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(ctx, db, ms[0]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO outbox (id, node_id, kind, received_at, idem_key, payload, email_hmac, ip_hmac) VALUES
			('a', 'n', 'lead', 1, 'k', '{"a":1}', x'01', x'02'),
			('b', 'n', 'event', 2, NULL, '{"b":2}', NULL, x'03'),
			('c', 'n', 'lead', 3, NULL, '{"c":3}', x'04', NULL),
			('d', 'n', 'lead', 4, NULL, '{}', NULL, NULL),
			('e', 'n', 'lead', 5, NULL, '{}', NULL, NULL)`,
		`UPDATE outbox SET synced_at = 10 WHERE id IN ('a', 'd', 'e')`,
		`UPDATE outbox SET quarantined_at = 11, quarantine_reason = 'bad' WHERE id = 'c'`,
		`DELETE FROM outbox WHERE seq > 3`, // pruned; seq 4 and 5 must never come back
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	dump := func() []string {
		rows, err := db.Query(`SELECT printf('%d|%s|%s|%s|%d|%s|%s|%s|%s|%s|%s|%s', seq, id, node_id, kind, received_at,
			quote(idem_key), payload, quote(email_hmac), quote(ip_hmac), quote(synced_at), quote(quarantined_at),
			quote(quarantine_reason)) FROM outbox ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := dump()

	v, err := Migrate(ctx, db)
	if err != nil || v != len(ms) {
		t.Fatalf("migrate: version %d, %v", v, err)
	}
	if after := dump(); !slices.Equal(before, after) {
		t.Errorf("rows changed:\n%q\n%q", before, after)
	}
	if got, want := indexes(t, db), []string{"outbox_pending", "outbox_synced_at"}; !slices.Equal(got, want) {
		t.Errorf("indexes %v, want %v", got, want)
	}
	var seq int64
	if err := db.QueryRow(`INSERT INTO outbox (id, node_id, kind, received_at, payload) VALUES ('f', 'n', 'lead', 6, '{}') RETURNING seq`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if seq != 6 {
		t.Errorf("next seq %d, want 6: the sequence went back", seq)
	}
	var pending int
	if err := db.QueryRow(`SELECT count(*) FROM outbox INDEXED BY outbox_pending WHERE synced_at IS NULL AND quarantined_at IS NULL`).Scan(&pending); err != nil || pending != 2 {
		t.Errorf("pending rows through the index: %d, %v", pending, err)
	}
}

// TestMigrateEmpty builds a new file and checks that an empty outbox
// upgrades too (no sqlite_sequence row to carry).
func TestMigrateEmpty(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Migrate(context.Background(), db); err != nil || v != len(ms) {
		t.Fatalf("migrate: version %d, %v", v, err)
	}
	if v, err := Migrate(context.Background(), db); err != nil || v != len(ms) {
		t.Fatalf("migrate again: version %d, %v", v, err)
	}
	var seq int64
	if err := db.QueryRow(`INSERT INTO outbox (id, node_id, kind, received_at, payload) VALUES ('a', 'n', 'lead', 1, '{}') RETURNING seq`).Scan(&seq); err != nil || seq != 1 {
		t.Fatalf("first seq %d, %v", seq, err)
	}
}
