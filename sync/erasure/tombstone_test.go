package erasure_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/erasure"
)

func hash(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// fill stores n sign-ups of the address with hash h in one transaction.
func fill(t *testing.T, out *outbox.Outbox, h []byte, n int, at time.Time) {
	t.Helper()
	recs := make([]outbox.Record, n)
	for i := range recs {
		recs[i] = outbox.Record{ID: fmt.Sprintf("%x-%d", h[:2], i), Kind: mailslot.KindLead, ReceivedAt: at,
			Payload: []byte(`{"email":"x@example.com","property":"shop.example","consent":"express"}`), EmailHMAC: h}
	}
	if _, err := out.Submit(context.Background(), outbox.Submission{Records: recs}); err != nil {
		t.Fatalf("submit %d rows: %v", n, err)
	}
}

func held(t *testing.T, out *outbox.Outbox, h []byte) int {
	t.Helper()
	var n int
	if err := out.DB().QueryRow(`SELECT count(*) FROM outbox WHERE email_hmac = ?`, h).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPullPastALargeAndAFailingTombstone(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	dir := t.TempDir()
	out, err := outbox.Open(ctx, outbox.Options{Dir: dir, NodeID: "edge-a", GroupCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	large, jammed, after := hash(0xa1), hash(0xc1), hash(0xd1)
	fill(t, out, large, 33_000, at) // past SQLite's 32,766 bound variables
	fill(t, out, jammed, 3, at)
	fill(t, out, after, 3, at)

	// Scrubbing the jammed address fails at this edge (a trigger, as a
	// damaged page would), whatever is tried.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, outbox.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`CREATE TRIGGER jam BEFORE UPDATE ON outbox WHEN OLD.email_hmac = X'%x'
		BEGIN SELECT RAISE(ABORT, 'jammed'); END`, jammed)); err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]byte{large, jammed, after} {
		if _, err := pool.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, $2, 'admin')`,
			h, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := erasure.New(erasure.Options{Outbox: out, DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Pull(ctx); err != nil || n != 3 {
		t.Fatalf("Pull = %d, %v; want 3 tombstones", n, err)
	}
	if held(t, out, large) != 0 || held(t, out, after) != 0 {
		t.Errorf("rows left: large %d, after the failing one %d", held(t, out, large), held(t, out, after))
	}
	if held(t, out, jammed) != 3 {
		t.Errorf("the jammed address lost rows it could not scrub whole")
	}
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var maxID int64
	if err := pool.QueryRow(ctx, `SELECT max(id) FROM mailslot.tombstones`).Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	if st.Cursor != maxID || st.Failing != 1 || st.FailingSince == nil {
		t.Errorf("status = %+v, want cursor %d and one failing tombstone", st, maxID)
	}

	// Once the fault is gone, a later pull applies it.
	if _, err := db.Exec(`DROP TRIGGER jam`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for held(t, out, jammed) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the failed tombstone was not retried within 15s")
		}
		if _, err := p.Pull(ctx); err != nil {
			t.Fatalf("Pull: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the retry's backoff, 1s after the failure
	}
	if st, _ := p.Status(ctx); st.Failing != 0 {
		t.Errorf("status still counts %d failing tombstones", st.Failing)
	}
}

// TestRunBacksOffThenPulls: with Postgres away the loop backs off and
// shows why; once it is back, the next pull scrubs the erased address and
// clears the error.
func TestRunBacksOffThenPulls(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	proxy := pgtest.NewProxy(t, pgtest.TargetAddr(t, dbURL))
	out, err := outbox.Open(ctx, outbox.Options{Dir: t.TempDir(), NodeID: "edge-a", GroupCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	erased := hash(0xe1)
	fill(t, out, erased, 2, time.Now().Add(-time.Hour))
	if _, err := pool.Exec(ctx, `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'admin')`, erased); err != nil {
		t.Fatal(err)
	}

	proxy.Down()
	p, err := erasure.New(erasure.Options{Outbox: out, DatabaseURL: proxy.URL(dbURL), Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Signals.Init(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := p.Signals.BackingOff.WaitOrTimeout(); err == nil {
		t.Fatal("backing off without an error")
	}
	if st, err := p.Status(ctx); err != nil || st.LastError == "" || st.LastPullAt != nil {
		t.Fatalf("status while Postgres is away = %+v, %v; want the error and no pull", st, err)
	}

	proxy.Up()
	p.Signals.RoundFinished.WaitOrTimeout()
	if n := held(t, out, erased); n != 0 {
		t.Errorf("after the pull the outbox still holds %d rows of the erased address", n)
	}
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastError != "" || st.Applied != 1 || st.LastPullAt == nil {
		t.Errorf("status after the pull = %+v, want one tombstone applied and no error", st)
	}
}
