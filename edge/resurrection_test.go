package edge_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/testsync"
)

// The resurrection scenario, end to end with two real edge nodes: edge A is
// cut off from Postgres while it holds a sign-up and events of an address;
// the address is erased through edge B; when A reconnects and syncs,
// nothing of the address may come back — not in Postgres, not in either
// outbox — and the suppression must hold. A genuine sign-up afterwards is
// kept.

const (
	victim    = "rosa.resurrect+promo@example.com"
	victimIP  = "198.51.100.23"
	bystander = "sam.stays@example.com"
)

var hasher = pii.NewHasher([]byte(edgetest.IPPepper))

type runningNode struct {
	t               *testing.T
	id, dataDir     string
	public, private string
	client          *http.Client
	stop            func()
}

func startNode(t *testing.T, id, dbURL string) *runningNode {
	t.Helper()
	dataDir := t.TempDir()
	cfg := edgetest.Config(t, map[string]string{
		"MAILSLOT_NODE_ID": id, "MAILSLOT_DATA_DIR": dataDir, "DATABASE_URL": dbURL,
		"MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_SYNC_INTERVAL": "20ms", "MAILSLOT_TOMBSTONE_INTERVAL": "100ms",
		// Every test client shares 127.0.0.1; the addresses are set per
		// request through this header, as a platform proxy would.
		"MAILSLOT_CLIENT_IP_HEADER": "Fly-Client-IP",
	})
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	r := &runningNode{t: t, id: id, dataDir: dataDir, public: "http://" + n.Addr(), private: "http://" + n.PrivateAddr(),
		client: &http.Client{Timeout: 10 * time.Second}}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s stopped with %v", id, err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

// post sends a JSON body and returns the status and answer.
func (n *runningNode) post(url, body, ip string, header ...string) (int, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if ip != "" {
		req.Header.Set("Fly-Client-IP", ip)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		n.t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (n *runningNode) signUp(email, consent, ip string) string {
	n.t.Helper()
	name := "Rosa Resurrecta"
	if email != victim {
		name = "Sam Stays"
	}
	body := fmt.Sprintf(`{"email":%q,"property":"shop.example","consent":%q,"name":%q,
		"page":"https://shop.example/join?email=%s","referrer":"https://mail.example/inbox/%s",
		"utm":{"source":"newsletter","campaign":"spring"}}`, email, consent, name, email, email)
	code, b := n.post(n.public+"/v1/leads", body, ip)
	if code != http.StatusAccepted {
		n.t.Fatalf("sign-up at %s: %d %s", n.id, code, b)
	}
	var ans struct{ ID string }
	_ = json.Unmarshal(b, &ans)
	return ans.ID
}

func (n *runningNode) events(submission, ip string) {
	n.t.Helper()
	body := fmt.Sprintf(`{"events":[
		{"type":"form_submit","property":"shop.example","name":"join","submission_id":%q,"props":{"plan":"pro"}},
		{"type":"click","property":"shop.example","name":"cta","submission_id":%q,"page":"https://shop.example/?u=%s"}]}`,
		submission, submission, victim)
	if code, b := n.post(n.public+"/v1/events", body, ip); code != http.StatusAccepted {
		n.t.Fatalf("events at %s: %d %s", n.id, code, b)
	}
}

type nodeStatus struct {
	Pending           int64  `json:"pending"`
	Quarantined       int64  `json:"quarantined"`
	PostgresReachable bool   `json:"postgres_reachable"`
	LastError         string `json:"last_error"`
	Tombstones        struct {
		Cursor int64 `json:"cursor"`
	} `json:"tombstones"`
	Reports struct {
		LastRefreshAt *time.Time `json:"last_refresh_at"`
	} `json:"reports"`
}

func (n *runningNode) status() nodeStatus {
	n.t.Helper()
	resp, err := n.client.Get(n.private + "/v1/sync/status")
	if err != nil {
		n.t.Fatalf("status of %s: %v", n.id, err)
	}
	defer resp.Body.Close()
	var st nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		n.t.Fatalf("status of %s: %v", n.id, err)
	}
	return st
}

// exportRows is what the edge's access-request API holds for email.
func (n *runningNode) exportRows(email string) []string {
	n.t.Helper()
	code, b := n.post(n.private+"/admin/export", `{"email":"`+email+`"}`, "")
	if code != http.StatusOK {
		n.t.Fatalf("export at %s: %d %s", n.id, code, b)
	}
	var ans struct {
		Rows []struct{ Kind string } `json:"rows"`
	}
	_ = json.Unmarshal(b, &ans)
	var kinds []string
	for _, r := range ans.Rows {
		kinds = append(kinds, r.Kind)
	}
	return kinds
}

// pgTraces searches every column of every base table in schema mailslot,
// discovered at run time: the text of each non-bytea column for each text
// needle, and each bytea column for each byte needle. It returns
// "table.column (needle)" → rows. (The same search as sync/drain's scrub
// completeness test.)
func pgTraces(t *testing.T, pool *pgxpool.Pool, text []string, bytes map[string][]byte) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = 'mailslot' AND tb.table_type = 'BASE TABLE' ORDER BY 1, c.ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, name, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.table, &c.name, &c.typ)
	})
	if err != nil || len(cols) == 0 {
		t.Fatalf("list columns: %v (%d)", err, len(cols))
	}
	found := map[string]int64{}
	for _, c := range cols {
		from, name := pgx.Identifier{"mailslot", c.table}.Sanitize(), pgx.Identifier{c.name}.Sanitize()
		search := func(label, sql string, arg any) {
			var n int64
			if err := pool.QueryRow(ctx, sql, arg).Scan(&n); err != nil {
				t.Fatalf("search %s.%s: %v", c.table, c.name, err)
			}
			if n > 0 {
				found[fmt.Sprintf("%s.%s (%s)", c.table, c.name, label)] = n
			}
		}
		if c.typ == "bytea" {
			for label, b := range bytes {
				search(label, fmt.Sprintf(`SELECT count(*) FROM %s WHERE position($1::bytea IN %s) > 0`, from, name), b)
			}
			continue
		}
		for _, s := range text {
			search(s, fmt.Sprintf(`SELECT count(*) FROM %s WHERE strpos(lower(%s::text), lower($1)) > 0`, from, name), s)
		}
	}
	return found
}

// outboxTraces searches every column of every table in an edge's outbox
// file the same way; the address's hash may stay on its erasure requests.
func outboxTraces(t *testing.T, dataDir string, text []string, bytes map[string][]byte) map[string]int64 {
	t.Helper()
	db := edgetest.OpenDB(t, dataDir)
	tables := sqliteStrings(t, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	found := map[string]int64{}
	for _, tb := range tables {
		exempt := ""
		if tb == "outbox" {
			exempt = " AND kind != 'erasure'"
		}
		for _, c := range sqliteStrings(t, db, `SELECT name FROM pragma_table_info(?)`, tb) {
			q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE instr(lower(CAST(%q AS TEXT)), lower(?)) > 0`, tb, c)
			for _, s := range text {
				if n := edgetest.Count(t, db, q, s); n > 0 {
					found[fmt.Sprintf("%s.%s (%s)", tb, c, s)] = int64(n)
				}
			}
			q = fmt.Sprintf(`SELECT count(*) FROM %q WHERE typeof(%q) = 'blob' AND instr(%q, ?) > 0%s`, tb, c, c, exempt)
			for label, b := range bytes {
				if n := edgetest.Count(t, db, q, b); n > 0 {
					found[fmt.Sprintf("%s.%s (%s)", tb, c, label)] = int64(n)
				}
			}
		}
	}
	return found
}

func sqliteStrings(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
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

func TestErasedAddressIsNotResurrectedByAnOfflineEdge(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	proxy := pgtest.NewProxy(t, pgtest.TargetAddr(t, dbURL))
	proxy.Down()
	a := startNode(t, "edge-a", proxy.URL(dbURL))
	b := startNode(t, "edge-b", dbURL)

	// Edge B knew the address before: a sign-up that synced.
	b.signUp(victim, "pending", victimIP)
	testsync.Until(t, 30*time.Second, "edge B to sync", func() bool { return b.status().Pending == 0 })
	// Each edge with a database refreshes the report rollups, first when
	// it starts.
	testsync.Until(t, 30*time.Second, "edge B to refresh the report rollups", func() bool { return b.status().Reports.LastRefreshAt != nil })

	// Edge A is offline: it takes a sign-up and events of the address, and
	// another address's sign-up, and cannot sync them.
	sub := a.signUp(victim, "express", victimIP)
	a.events(sub, victimIP)
	a.signUp(bystander, "express", "203.0.113.50")
	testsync.Until(t, 30*time.Second, "edge A to fail a sync attempt", func() bool {
		st := a.status()
		return st.Pending == 4 && st.LastError != ""
	})
	if st := a.status(); st.Pending != 4 || st.PostgresReachable {
		t.Fatalf("edge A is not holding its rows offline: %+v", st)
	}

	// The address is erased through edge B's admin API (public listener,
	// admin token).
	time.Sleep(10 * time.Millisecond) // time must pass: the erasure comes strictly after A's rows
	code, body := b.post(b.public+"/admin/erasures", `{"email":"`+strings.ToUpper(victim)+`"}`, "", "Authorization", "Bearer "+edgetest.AdminToken)
	if code != http.StatusAccepted {
		t.Fatalf("erasure at B: %d %s", code, body)
	}
	h := hasher.Email(victim)
	testsync.Until(t, 30*time.Second, "the erasure to reach Postgres", func() bool {
		var n int64
		_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.tombstones WHERE email_hmac = $1`, h).Scan(&n)
		return n == 1
	})
	// A has not heard of it.
	if kinds := a.exportRows(victim); !slices.Contains(kinds, "lead") {
		t.Fatalf("edge A's outbox lost the sign-up while offline: %v", kinds)
	}

	// A reconnects, syncs and pulls the tombstone.
	proxy.Up()
	var tombstone int64
	_ = pool.QueryRow(context.Background(), `SELECT max(id) FROM mailslot.tombstones`).Scan(&tombstone)
	testsync.Until(t, 60*time.Second, "edge A to sync and pull the tombstone", func() bool {
		st := a.status()
		return st.Pending == 0 && st.Tombstones.Cursor >= tombstone
	})
	testsync.Until(t, 30*time.Second, "edge B to pull the tombstone", func() bool { return b.status().Tombstones.Cursor >= tombstone })
	for _, n := range []*runningNode{a, b} {
		if st := n.status(); st.Quarantined != 0 {
			t.Errorf("edge %s quarantined %d rows", n.id, st.Quarantined)
		}
	}

	text := []string{victim, "Rosa Resurrecta"}
	bytes := map[string][]byte{"email hash": h, "IP hash": hasher.IP(victimIP)}
	// Nothing in Postgres but the tombstone and the suppression.
	for k, n := range pgTraces(t, pool, text, bytes) {
		if k != "tombstones.email_hmac (email hash)" && k != "suppressions.email_hmac (email hash)" {
			t.Errorf("Postgres: %s holds the erased address in %d row(s)", k, n)
		}
	}
	var suppressed int64
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.suppressions WHERE email_hmac = $1 AND property = '' AND reason = 'erased'`, h).Scan(&suppressed)
	if suppressed != 1 {
		t.Errorf("no erasure suppression for the address")
	}
	var dropped int64
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-a' AND kind = 'lead' AND outcome = 'erased'`).Scan(&dropped)
	if dropped != 1 {
		t.Errorf("edge A's sign-up is not recorded as dropped by the erasure")
	}
	var bystanders int64
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.leads WHERE email = $1 AND consent_status = 'express'`, bystander).Scan(&bystanders)
	if bystanders != 1 {
		t.Errorf("the other address's sign-up from edge A is missing")
	}
	// Nothing in either outbox but B's erasure request (hash only).
	for _, n := range []*runningNode{a, b} {
		for k, c := range outboxTraces(t, n.dataDir, text, bytes) {
			t.Errorf("edge %s outbox: %s holds the erased address in %d row(s)", n.id, k, c)
		}
		if kinds := n.exportRows(victim); len(slices.DeleteFunc(kinds, func(k string) bool { return k == "erasure" })) != 0 {
			t.Errorf("edge %s still exports %v for the address", n.id, kinds)
		}
	}
	db := edgetest.OpenDB(t, a.dataDir)
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox WHERE kind = 'lead' AND payload = '{"erased":true}'`); n != 1 {
		t.Errorf("edge A's sign-up row is not scrubbed to {\"erased\":true} (%d)", n)
	}

	// A genuine sign-up after the erasure is kept; its express claim is
	// recorded, but the erasure's suppression holds until the address
	// confirms through a link minted after it (sync/drain's consent tests).
	a.signUp(victim, "express", "192.0.2.77")
	testsync.Until(t, 30*time.Second, "edge A to sync the new sign-up", func() bool { return a.status().Pending == 0 })
	var status string
	var submissions int
	if err := pool.QueryRow(context.Background(), `SELECT consent_status, submissions FROM mailslot.leads WHERE email_hmac = $1`, h).Scan(&status, &submissions); err != nil {
		t.Fatalf("the new sign-up was not kept: %v", err)
	}
	if status != "withdrawn" || submissions != 1 {
		t.Errorf("new lead is %s with %d submissions, want withdrawn with 1", status, submissions)
	}
}
