package main

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/drain"
)

// deleteByHand removes what sync applied for seqs of nodeID, as an
// operator's mistaken DELETE would: ledger keys, sign-ups with their
// consent records, events.
func deleteByHand(t *testing.T, pool *pgxpool.Pool, nodeID string, seqs []int64) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`WITH c AS (DELETE FROM mailslot.consent_records WHERE origin_node = $1 AND origin_seq = ANY($2) RETURNING lead_id)
		 DELETE FROM mailslot.leads WHERE id IN (SELECT lead_id FROM c)`,
		`DELETE FROM mailslot.events WHERE origin_node = $1 AND origin_seq = ANY($2)`,
		`DELETE FROM mailslot.ledger WHERE node_id = $1 AND seq = ANY($2)`,
	} {
		if _, err := pool.Exec(ctx, q, nodeID, seqs); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestReconcileFix: rows deleted from Postgres by hand are reported
// missing (exit 3), --fix requeues them on their edge and waits until they
// are back, and a second --fix changes nothing.
func TestReconcileFix(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	e := startInproc(t, edgeEnv("edge-f", t.TempDir(), dbURL, ""))
	load(t, e.URL, "fix", 6, 6) // seqs 1-6 sign-ups, 7-12 events
	waitSynced(t, e.PrivateURL)
	env := map[string]string{"DATABASE_URL": dbURL}

	stdout, _, err := ctl(t, env, "reconcile", "--edge", e.PrivateURL)
	if err != nil {
		t.Fatalf("reconcile of a healthy edge: %v\n%s", err, stdout)
	}
	for _, want := range []string{"NODE", "edge-f", "1-12", "ok", "duplicates: none"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}

	deleteByHand(t, pool, "edge-f", []int64{2, 3, 8, 9, 10})
	stdout, _, err = ctl(t, env, "reconcile", "--edge", e.PrivateURL)
	if code := exitCode(err); code != exitMissing {
		t.Fatalf("reconcile with rows missing: exit %d (%v), want %d\n%s", code, err, exitMissing, stdout)
	}
	for _, want := range []string{"MISSING: run with --fix", "missing from Postgres (synced on the edge, not in the ledger): 2-3, 8-10"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, err = ctl(t, env, "reconcile", "--json", "--page", "5", "--edge", e.PrivateURL)
	if exitCode(err) != exitMissing {
		t.Fatalf("reconcile --json: %v", err)
	}
	res := decodeJSON[reconcileResult](t, stdout)
	r := res.Nodes[0]
	if res.OK || res.Missing != 5 || r.Missing != 5 || !reflect.DeepEqual(r.MissingSeqs, []int64{2, 3, 8, 9, 10}) ||
		r.InLedger != 7 || r.GapSeqs != 0 || r.Edge.SyncedRetained != 12 {
		t.Fatalf("reconcile --json = %s", stdout)
	}

	stdout, stderr, err := ctl(t, env, "reconcile", "--fix", "--edge", e.PrivateURL)
	if err != nil {
		t.Fatalf("reconcile --fix: %v\n%s\n%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "fixed: 5 requeued row(s) now in Postgres") {
		t.Errorf("--fix output:\n%s", stdout)
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-f'`: 12,
		`SELECT count(*) FROM mailslot.leads`:                           6,
		`SELECT count(*) FROM mailslot.consent_records`:                 6,
		`SELECT count(*) FROM mailslot.events`:                          6,
		`SELECT count(*) FROM mailslot.leads WHERE submissions <> 1`:    0,
	} {
		if n := count(t, pool, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	stdout, _, err = ctl(t, env, "reconcile", "--fix", "--json", "--edge", e.PrivateURL)
	if err != nil {
		t.Fatalf("second --fix: %v\n%s", err, stdout)
	}
	if res := decodeJSON[reconcileResult](t, stdout); !res.OK || res.Nodes[0].Requeued != 0 || res.Nodes[0].InLedger != 12 {
		t.Fatalf("second --fix = %s", stdout)
	}
}

// TestReconcileConflictsAndDuplicates: a key the ledger holds for another
// submission, and a submission under two keys, are reported and keep the
// exit status non-zero; --fix cannot replay them.
func TestReconcileConflictsAndDuplicates(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	e := startInproc(t, edgeEnv("edge-d", t.TempDir(), dbURL, ""))
	load(t, e.URL, "dup", 0, 4)
	waitSynced(t, e.PrivateURL)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `UPDATE mailslot.ledger SET submission_id = gen_random_uuid() WHERE node_id = 'edge-d' AND seq = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO mailslot.ledger (node_id, seq, kind, submission_id, received_at)
		SELECT 'elsewhere', 7, kind, submission_id, received_at FROM mailslot.ledger WHERE node_id = 'edge-d' AND seq = 2`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dbURL}
	stdout, _, err := ctl(t, env, "reconcile", "--fix", "--edge", e.PrivateURL)
	if code := exitCode(err); code != exitMissing {
		t.Fatalf("exit %d (%v), want %d\n%s", code, err, exitMissing, stdout)
	}
	for _, want := range []string{"CONFLICTS", "seqs the ledger holds for another submission: 1", "duplicates: 1 submission id(s)", "edge-d:2, elsewhere:7"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, _ = ctl(t, env, "reconcile", "--json", "--edge", e.PrivateURL)
	res := decodeJSON[reconcileResult](t, stdout)
	if res.OK || res.Conflicts != 1 || len(res.Duplicates) != 1 || res.Nodes[0].DuplicateCount != 1 || res.Nodes[0].Missing != 0 {
		t.Fatalf("reconcile --json = %s", stdout)
	}
}

// TestReconcileErrors: each failure names what is wrong and the fix.
func TestReconcileErrors(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	e := startInproc(t, edgeEnv("edge-e", t.TempDir(), dbURL, ""))
	load(t, e.URL, "err", 1, 0)
	waitSynced(t, e.PrivateURL)
	closedEdge := "http://" + edgetest.FreeAddr(t)

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string // in the error or the output
	}{
		{"no database", map[string]string{}, nil, 2, []string{"pass --database-url or set DATABASE_URL"}},
		{"postgres down", map[string]string{"DATABASE_URL": closedURL(t)}, nil, 1, []string{"connect to Postgres at 127.0.0.1:", "is it running?"}},
		{"bad page", map[string]string{"DATABASE_URL": dbURL}, []string{"--page", "0"}, 2, []string{"--page must be between 1 and 5000"}},
		{"edge down", map[string]string{"DATABASE_URL": dbURL}, []string{"--edge", closedEdge}, 1,
			[]string{"1 edge(s) could not be checked", "ERROR: edge " + closedEdge + " unreachable", "connection refused", "--edge-template"}},
		{"wrong token", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_ADMIN_TOKEN": "wrong-token"}, []string{"--edge", e.URL}, 1,
			[]string{"refused the admin token (status 403): set MAILSLOT_ADMIN_TOKEN, or use the private listener"}},
		{"template to nowhere", map[string]string{"DATABASE_URL": dbURL}, []string{"--edge-template", closedEdge + "/{node}"}, 1,
			[]string{"edge-e", "unreachable"}},
		{"not asked", map[string]string{"DATABASE_URL": dbURL}, nil, 0, []string{"edge-e", "not asked"}},
		{"unknown node", map[string]string{"DATABASE_URL": dbURL}, []string{"--node", "ghost"}, 1, []string{"ghost", "unknown node"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := ctl(t, tc.env, append([]string{"reconcile"}, tc.args...)...)
			if code := exitCode(err); code != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s%s", code, err, tc.code, stdout, stderr)
			}
			all := stdout + stderr
			if err != nil {
				all += err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}

	// The public listener with the right token works like the private one.
	stdout, _, err := ctl(t, map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_ADMIN_TOKEN": edgetest.AdminToken}, "reconcile", "--json", "--edge", e.URL)
	if err != nil {
		t.Fatalf("reconcile through the public listener: %v\n%s", err, stdout)
	}
}

// TestAdminOutboxAPI checks the edge's side: the bounds and errors of the
// three endpoints, and that requeue is idempotent.
func TestAdminOutboxAPI(t *testing.T) {
	e := startInproc(t, edgeEnv("edge-api", t.TempDir(), "", ""))
	load(t, e.URL, "api", 2, 3)
	var page struct {
		Rows []outbox.Held `json:"rows"`
		Next *int64        `json:"next"`
	}
	getJSON(t, e.PrivateURL+"/admin/outbox/seqs?from=2&to=5&limit=2", &page)
	if len(page.Rows) != 2 || page.Rows[0].Seq != 2 || page.Rows[1].Seq != 3 || page.Next == nil || *page.Next != 4 ||
		page.Rows[0].State != outbox.StatePending || page.Rows[0].ID == "" {
		t.Fatalf("page = %+v", page)
	}
	for _, q := range []string{"from=-1", "to=x", "limit=0", "limit=5001", "from=5&to=4"} {
		resp, err := httpClient.Get(e.PrivateURL + "/admin/outbox/seqs?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("seqs?%s: status %d, want 422", q, resp.StatusCode)
		}
	}
	resp, err := httpClient.Get(e.URL + "/admin/outbox/summary")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("summary on the public listener without a token: %d, want 401", resp.StatusCode)
	}
	for body, want := range map[string]int{
		`{"seqs":[]}`:       http.StatusUnprocessableEntity,
		`{"seqs":[0]}`:      http.StatusUnprocessableEntity,
		`{"seqs":`:          http.StatusBadRequest,
		`{"seqs":[1,2,99]}`: http.StatusOK,
	} {
		resp, err := httpClient.Post(e.PrivateURL+"/admin/outbox/requeue", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("requeue %s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	// Nothing was synced (no DATABASE_URL): requeueing pending rows changes
	// nothing.
	if n, err := e.Outbox.Requeue(context.Background(), []int64{1, 2}); err != nil || n != 0 {
		t.Fatalf("requeue of pending rows = %d, %v", n, err)
	}
	if err := e.Outbox.MarkSynced(context.Background(), []int64{1, 2}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Outbox.Requeue(context.Background(), []int64{1, 2, 1}); err != nil || n != 2 || e.Outbox.PendingCount() != 5 {
		t.Fatalf("requeue of synced rows = %d, %v; pending %d", n, err, e.Outbox.PendingCount())
	}
	sum := summaryOf(t, e.PrivateURL)
	if sum.NodeID != "edge-api" || sum.Pending != 5 || sum.MinSeq != 1 || sum.LastSeq != 5 || len(sum.Ranges) != 1 || sum.Ranges[0] != (outbox.SeqRange{First: 1, Last: 5}) {
		t.Fatalf("summary = %+v", sum)
	}
}

// TestClassify covers the comparison itself: conflicts, rows only in the
// ledger, gaps, and gaps a recorded jump explains.
func TestClassify(t *testing.T) {
	r := &reconcileReport{Edge: &outbox.Summary{Jumps: []outbox.SeqJump{{From: 12, To: 1000}}}}
	held := []outbox.Held{
		{Seq: 3, ID: "a", State: outbox.StateSynced},
		{Seq: 4, ID: "b", State: outbox.StateSynced},      // missing
		{Seq: 5, ID: "c", State: outbox.StatePending},     // will sync
		{Seq: 6, ID: "d", State: outbox.StateQuarantined}, // poison
		{Seq: 9, ID: "e", State: outbox.StateSynced},      // conflict
		{Seq: 12, ID: "f", State: outbox.StateSynced},
		{Seq: 1001, ID: "g", State: outbox.StatePending},
	}
	ledger := []drain.LedgerKey{{Seq: 3, SubmissionID: "a"}, {Seq: 7, SubmissionID: "x"}, {Seq: 9, SubmissionID: "other"}, {Seq: 12, SubmissionID: "f"}}
	next := r.classify(held, ledger, 1)
	want := reconcileReport{InLedger: 2, PendingNew: 2, Missing: 1, Quarantined: 1, Conflicts: 1, LedgerOnly: 1, GapSeqs: 5,
		ConflictSeqs: []int64{9}, Gaps: []outbox.SeqRange{{First: 1, Last: 2}, {First: 8, Last: 8}, {First: 10, Last: 11}}}
	got := *r
	got.Edge, got.missingAll, got.quarantinedAll = nil, nil, nil
	if next != 1002 || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(r.missingAll, []int64{4}) || !reflect.DeepEqual(r.quarantinedAll, []int64{6}) {
		t.Fatalf("classify = %+v (next %d)\nwant %+v", got, next, want)
	}
	if s := ranges([]int64{1, 2, 3, 5, 7, 8}); s != "1-3, 5, 7-8" {
		t.Errorf("ranges = %q", s)
	}
}
