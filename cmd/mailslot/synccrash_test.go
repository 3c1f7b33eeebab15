package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
)

// syncStatus is the part of GET /v1/sync/status this test reads.
type syncStatus struct {
	State        string `json:"state"`
	Pending      int64  `json:"pending"`
	RowsSynced   int64  `json:"rows_synced"`
	RowsReplayed int64  `json:"rows_replayed"`
	Quarantined  int64  `json:"quarantined"`
	LastSeq      int64  `json:"last_seq"`
	LastError    string `json:"last_error"`
}

func readSyncStatus(t *testing.T, p *edgetest.Process) (syncStatus, error) {
	t.Helper()
	resp, err := http.Get(p.PrivateURL + "/v1/sync/status")
	if err != nil {
		return syncStatus{}, err
	}
	defer resp.Body.Close()
	var st syncStatus
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// postEvents sends batches of n page views and returns how many the edge
// acknowledged.
func postEvents(t *testing.T, baseURL string, batches, n int) int {
	t.Helper()
	events := make([]string, n)
	for i := range events {
		events[i] = fmt.Sprintf(`{"type":"page_view","property":"crash-test","page":"/p%d"}`, i)
	}
	body := `{"events":[` + strings.Join(events, ",") + `]}`
	acked := 0
	for range batches {
		resp, err := http.Post(baseURL+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("post events: %v", err)
		}
		var ans struct{ Count int }
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || ans.Count != n {
			t.Fatalf("post events: status %d, count %d", resp.StatusCode, ans.Count)
		}
		acked += n
	}
	return acked
}

func pgIDs(t *testing.T, pool *pgxpool.Pool, query string) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func pgCount(t *testing.T, pool *pgxpool.Pool, query string) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestKillDuringSync fills an edge's outbox with a backlog while Postgres
// is not configured, then restarts it with DATABASE_URL and a small sync
// batch and kills it with SIGKILL at several points of the drain (each
// while 10–90% of the backlog is pending), restarting it on the same data
// directory each time; the last kill lands after Postgres committed a
// batch and before the edge could mark it. In the end every acknowledged
// submission is in Postgres exactly once.
func TestKillDuringSync(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	dataDir := t.TempDir()

	// The backlog: sign-ups and events the edge acknowledged while it
	// could only buffer.
	buffering := edgetest.Start(t, serveEnv(dataDir))
	l := startLoad(buffering.URL, "sync-crash", 8)
	l.waitFor(t, 0, 4000)
	l.stop()
	ackedEvents := postEvents(t, buffering.URL, 20, 10)
	if err := buffering.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := buffering.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(l.bad) > 0 {
		t.Fatalf("%d sign-ups refused, first: %s", len(l.bad), l.bad[0])
	}
	// A request cut short when the load stopped may be stored without
	// its answer arriving: Postgres must end up with what is stored, and
	// that includes everything acknowledged.
	stored := readOutbox(t, dataDir)
	total := int64(len(stored))
	storedLeads := 0
	for _, r := range stored {
		if r.email != "" {
			storedLeads++
		}
	}
	checkAcked(t, stored, l.acked)
	if storedLeads < len(l.acked) || int(total)-storedLeads != ackedEvents {
		t.Fatalf("outbox holds %d sign-ups and %d events; %d and %d were acknowledged",
			storedLeads, int(total)-storedLeads, len(l.acked), ackedEvents)
	}

	// The edge reaches Postgres through a proxy, so that the last kill
	// can be placed exactly: after Postgres committed a batch, before the
	// edge heard so (and marked the rows).
	proxy := pgtest.NewProxy(t, pgtest.TargetAddr(t, dbURL))
	env := serveEnv(dataDir)
	env["DATABASE_URL"] = proxy.URL(dbURL)
	env["MAILSLOT_SYNC_BATCH"] = "50"
	env["MAILSLOT_SYNC_INTERVAL"] = "10ms"
	outbox := edgetest.OpenDB(t, dataDir)
	kills := []struct {
		pending     float64 // kill once at most this share is pending
		afterCommit bool    // hold the next COMMIT's answer, then kill
	}{{0.8, false}, {0.55, false}, {0.3, true}}
	inWindow := 0
	for i, k := range kills {
		frac := k.pending
		p := edgetest.Start(t, env)
		var last syncStatus
		deadline := time.Now().Add(90 * time.Second)
		for {
			st, err := readSyncStatus(t, p)
			if err == nil {
				last = st
				if st.Pending <= int64(frac*float64(total)) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: pending still %d of %d after 90s (last error %q)\n%s", i, last.Pending, total, last.LastError, p.Logs())
			}
			time.Sleep(2 * time.Millisecond) // a tight poll: the kill must land close to this point
		}
		if k.afterCommit {
			lost := proxy.CommitAnswersLost()
			proxy.LoseNextCommitAnswer(false)
			for proxy.CommitAnswersLost() == lost {
				if time.Now().After(deadline) {
					t.Fatalf("kill %d: no COMMIT went through the proxy", i)
				}
				time.Sleep(time.Millisecond) // a tight poll, as above: kill right after that COMMIT
			}
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if last.Pending < total/10 || last.Pending > total*9/10 {
			t.Fatalf("kill %d landed with %d of %d pending, outside 10–90%%", i, last.Pending, total)
		}
		// The edge marks rows only after Postgres committed them: Postgres
		// may be ahead of the outbox (killed in between), never behind.
		var marked int64
		if err := outbox.QueryRow(`SELECT count(*) FROM outbox WHERE synced_at IS NOT NULL`).Scan(&marked); err != nil {
			t.Fatal(err)
		}
		inPG := pgCount(t, pool, `SELECT count(*) FROM mailslot.ledger`)
		if inPG < marked {
			t.Fatalf("kill %d: %d rows marked synced but only %d in the ledger", i, marked, inPG)
		}
		if inPG > marked {
			inWindow++
		} else if k.afterCommit {
			t.Fatalf("kill %d after a held COMMIT: Postgres has %d rows and the outbox marks %d; want Postgres ahead", i, inPG, marked)
		}
		t.Logf("kill %d: %d of %d pending when killed; %d marked synced, %d in Postgres", i, last.Pending, total, marked, inPG)
	}

	p := edgetest.Start(t, env)
	var st syncStatus
	if ok, _ := testsync.Within(120*time.Second, func() (bool, string) {
		var err error
		st, err = readSyncStatus(t, p)
		return err == nil && st.Pending == 0, ""
	}); !ok {
		t.Fatalf("not drained after the last restart: %+v\n%s", st, p.Logs())
	}
	t.Logf("%d of %d kills fell between a Postgres commit and the outbox mark; the last run replayed %d rows", inWindow, len(kills), st.RowsReplayed)
	if st.RowsReplayed == 0 {
		t.Errorf("the run after a kill between commit and mark replayed nothing")
	}
	if st.Quarantined != 0 {
		t.Errorf("%d rows quarantined; a replay must never look like poison", st.Quarantined)
	}

	// No loss: every acknowledged sign-up's id, and every stored event's.
	consent := pgIDs(t, pool, `SELECT submission_id::text FROM mailslot.consent_records`)
	lost := 0
	for id := range l.acked {
		if consent[id] != 1 {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged sign-up %s is in consent_records %d times", id, consent[id])
			}
		}
	}
	events := pgIDs(t, pool, `SELECT submission_id::text FROM mailslot.events`)
	ledger := pgIDs(t, pool, `SELECT submission_id::text FROM mailslot.ledger`)
	for id := range stored {
		if ledger[id] != 1 {
			lost++
			if lost <= 5 {
				t.Errorf("outbox row %s is in the ledger %d times", id, ledger[id])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d submissions missing or repeated", lost)
	}

	// No duplicates: exact counts in every table.
	checks := []struct {
		query string
		want  int64
	}{
		{`SELECT count(*) FROM mailslot.ledger`, total},
		{`SELECT count(*) FROM mailslot.consent_records`, int64(storedLeads)},
		{`SELECT count(*) FROM mailslot.leads`, int64(storedLeads)}, // every sign-up used a new address
		{`SELECT sum(submissions) FROM mailslot.leads`, int64(storedLeads)},
		{`SELECT count(*) FROM mailslot.events`, int64(ackedEvents)},
		{`SELECT rows_synced FROM mailslot.nodes WHERE node_id = '` + edgetest.NodeID + `'`, total},
		{`SELECT last_seq FROM mailslot.nodes WHERE node_id = '` + edgetest.NodeID + `'`, maxSeq(stored)},
	}
	for _, c := range checks {
		if got := pgCount(t, pool, c.query); got != c.want {
			t.Errorf("%s = %d, want %d", c.query, got, c.want)
		}
	}
	if len(events) != ackedEvents {
		t.Errorf("%d distinct event ids in Postgres, %d acknowledged", len(events), ackedEvents)
	}
}
