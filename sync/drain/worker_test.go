package drain_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // to write poison straight into the outbox file

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/drain"
)

const property = "site.example"

var hasher = pii.NewHasher([]byte("test-pepper"))

// edgeNode is one edge's outbox and, once started, its sync worker.
type edgeNode struct {
	t      *testing.T
	id     string
	dir    string
	out    *outbox.Outbox
	w      *drain.Worker
	stop   func()
	logs   *testsync.Buffer
	leads  int // lead rows submitted
	events int
	// reverse makes submit walk the addresses from the other end, so
	// that two edges' batches take the same leads in opposite orders.
	reverse bool
}

func newEdge(t *testing.T, nodeID string) *edgeNode {
	t.Helper()
	dir := t.TempDir()
	out, err := outbox.Open(context.Background(), outbox.Options{Dir: dir, NodeID: nodeID, GroupCommit: true})
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	t.Cleanup(func() {
		if err := out.Close(); err != nil {
			t.Errorf("close outbox: %v", err)
		}
	})
	return &edgeNode{t: t, id: nodeID, dir: dir, out: out}
}

// start runs a sync worker into dbURL until the test ends (or stop).
func (e *edgeNode) start(dbURL string, edit ...func(*drain.Options)) {
	e.t.Helper()
	e.logs = &testsync.Buffer{}
	opts := drain.Options{
		Outbox: e.out, DatabaseURL: dbURL, NodeID: e.id, Region: "region-" + e.id,
		BatchSize: 100, Interval: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range edit {
		f(&opts)
	}
	w, err := drain.New(opts)
	if err != nil {
		e.t.Fatalf("drain.New: %v", err)
	}
	w.Signals.Init(e.t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			e.t.Errorf("worker Run: %v", err)
		}
	}()
	var once sync.Once
	e.w = w
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(e.stop)
}

func (e *edgeNode) status() drain.Status {
	e.t.Helper()
	st, err := e.w.Status(context.Background())
	if err != nil {
		e.t.Fatalf("Status: %v", err)
	}
	return st
}

// email i of a small shared set, so that edges and batches overlap.
func email(i int) string { return fmt.Sprintf("user%d@example.com", i) }

func leadRecord(addr, name string) outbox.Record {
	now := time.Now().UTC()
	b, err := json.Marshal(mailslot.LeadPayload{
		Lead: mailslot.Lead{Email: addr, Property: property, Consent: mailslot.ConsentExpress, Name: name, PolicyVersion: "2026-01",
			UTM: mailslot.UTM{Source: "news"}},
		ConsentRecord: mailslot.ConsentRecord{Property: property, Status: mailslot.ConsentExpress, PolicyVersion: "2026-01", RecordedAt: now},
	})
	if err != nil {
		panic(err)
	}
	return outbox.Record{ID: uuid.NewString(), Kind: mailslot.KindLead, ReceivedAt: now, Payload: b,
		EmailHMAC: hasher.Email(addr), IPHMAC: hasher.IP("192.0.2.9")}
}

func eventRecord(submissionID string) outbox.Record {
	b, _ := json.Marshal(mailslot.Event{Type: mailslot.EventFormSubmit, Property: property, SubmissionID: submissionID})
	return outbox.Record{ID: uuid.NewString(), Kind: mailslot.KindEvent, ReceivedAt: time.Now().UTC(), Payload: b}
}

// submit stores n sign-ups over the first `distinct` addresses, and one
// event for every fifth, in submissions of up to 500 records. Each Submit
// must succeed whatever Postgres is doing.
func (e *edgeNode) submit(n, distinct int) {
	e.t.Helper()
	var recs []outbox.Record
	flush := func() {
		if len(recs) == 0 {
			return
		}
		if _, err := e.out.Submit(context.Background(), outbox.Submission{Records: recs}); err != nil {
			e.t.Fatalf("Submit: %v", err)
		}
		recs = nil
	}
	for i := range n {
		k := (e.leads + i) % distinct
		if e.reverse {
			k = distinct - 1 - k
		}
		l := leadRecord(email(k), "Name")
		recs = append(recs, l)
		if i%5 == 0 {
			recs = append(recs, eventRecord(l.ID))
			e.events++
		}
		if len(recs) >= 500 {
			flush()
		}
	}
	flush()
	e.leads += n
}

// rows is how many outbox rows the edge has accepted.
func (e *edgeNode) rows() int64 { return int64(e.leads + e.events) }

func (e *edgeNode) waitDrained(timeout time.Duration) {
	e.t.Helper()
	testsync.UntilState(e.t, timeout, e.id+" to drain", func() (bool, string) {
		st := e.status()
		return st.Pending == 0, fmt.Sprintf("%+v", st)
	})
}

// pgCounts is what Postgres holds after a sync.
type pgCounts struct {
	Ledger, Leads, Consent, Events, Submissions int64
}

func readCounts(t *testing.T, pool *pgxpool.Pool) pgCounts {
	t.Helper()
	var c pgCounts
	err := pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM mailslot.ledger), (SELECT count(*) FROM mailslot.leads),
		(SELECT count(*) FROM mailslot.consent_records), (SELECT count(*) FROM mailslot.events),
		(SELECT coalesce(sum(submissions), 0) FROM mailslot.leads)`).
		Scan(&c.Ledger, &c.Leads, &c.Consent, &c.Events, &c.Submissions)
	if err != nil {
		t.Fatalf("count Postgres rows: %v", err)
	}
	return c
}

// checkExact requires Postgres to hold each submitted row exactly once.
func checkExact(t *testing.T, pool *pgxpool.Pool, distinct int, edges ...*edgeNode) {
	t.Helper()
	var want pgCounts
	for _, e := range edges {
		want.Ledger += e.rows()
		want.Consent += int64(e.leads)
		want.Submissions += int64(e.leads)
		want.Events += int64(e.events)
	}
	want.Leads = int64(distinct)
	if got := readCounts(t, pool); got != want {
		t.Errorf("Postgres holds %+v, want %+v", got, want)
	}
	var dupes int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT submission_id FROM mailslot.ledger GROUP BY submission_id HAVING count(*) > 1) d`).Scan(&dupes); err != nil {
		t.Fatal(err)
	}
	if dupes != 0 {
		t.Errorf("%d submissions are in the ledger more than once", dupes)
	}
	for _, e := range edges {
		var lastSeq, synced int64
		var region string
		err := pool.QueryRow(context.Background(), `SELECT region, last_seq, rows_synced FROM mailslot.nodes WHERE node_id = $1`, e.id).
			Scan(&region, &lastSeq, &synced)
		if e.rows() == 0 && errors.Is(err, pgx.ErrNoRows) {
			continue // a node appears with its first batch
		}
		if err != nil {
			t.Errorf("nodes row of %s: %v", e.id, err)
			continue
		}
		if n := e.rows(); region != "region-"+e.id || lastSeq != e.out.LastSeq() || synced != n {
			t.Errorf("nodes row of %s = region %s, last_seq %d, rows_synced %d; want region-%s, %d, %d",
				e.id, region, lastSeq, synced, e.id, e.out.LastSeq(), n)
		}
		if st := e.status(); st.Quarantined != 0 || st.Pending != 0 {
			t.Errorf("%s: %d quarantined, %d pending; want none", e.id, st.Quarantined, st.Pending)
		}
	}
}

// TestPostgresDownThenBack starts an edge while Postgres is unreachable,
// lets it recover, then takes Postgres away again mid-life. The edge must
// accept throughout, say what is wrong, and end with every row once.
func TestPostgresDownThenBack(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	proxy := pgtest.NewProxy(t, pgtest.TargetAddr(t, dbURL))
	e := newEdge(t, "node-down")
	const distinct = 7
	empty := readCounts(t, pool)

	// Down from the start.
	proxy.Down()
	e.start(proxy.URL(dbURL))
	e.submit(10, distinct)
	e.w.Signals.BackingOff.WaitOrTimeout()
	if st := e.status(); st.PostgresReachable || st.LastError == "" || st.State != drain.StateBackoff {
		t.Errorf("down at start, backing off: %+v; want unreachable, the error, state %s", st, drain.StateBackoff)
	}
	if st := e.status(); st.Pending != e.rows() || st.LastSuccessAt != nil {
		t.Errorf("down at start: pending %d (want %d), last success %v", st.Pending, e.rows(), st.LastSuccessAt)
	}
	proxy.Up()
	e.waitDrained(30 * time.Second)
	if st := e.status(); !st.PostgresReachable || st.LastError != "" || st.LastSuccessAt == nil {
		t.Fatalf("after the first recovery: %+v", st)
	}
	before := readCounts(t, pool)
	if before == empty {
		t.Fatal("nothing reached Postgres after the first recovery")
	}
	synced := e.rows()

	// Down again, with a warm pool.
	proxy.Down()
	for range 4 { // the edge accepts throughout
		e.submit(25, distinct)
	}
	// A poll, not a signal: a batch that fails after it was launched
	// fails in settle, which retries after Interval without backing off.
	testsync.UntilState(t, 30*time.Second, "status to report Postgres down", func() (bool, string) {
		st := e.status()
		return !st.PostgresReachable && st.LastError != "", fmt.Sprintf("%+v", st)
	})
	e.submit(25, distinct)
	st := e.status()
	if want := e.rows() - synced; st.Pending != want || st.OldestPendingAgeSeconds <= 0 || st.LastErrorAt == nil {
		t.Errorf("while down: pending %d (want %d), oldest age %v, last error at %v", st.Pending, want, st.OldestPendingAgeSeconds, st.LastErrorAt)
	}
	if got := readCounts(t, pool); got != before {
		t.Errorf("Postgres changed while unreachable: %+v -> %+v", before, got)
	}

	proxy.Up()
	e.waitDrained(60 * time.Second)
	checkExact(t, pool, distinct, e)
	if st := e.status(); !st.PostgresReachable || st.LastError != "" || st.RowsSynced != e.rows() {
		t.Errorf("after recovery: %+v", st)
	}
}

// TestPostgresConnectionsDieMidBatch breaks the worker's connections over
// and over while a large backlog drains: a batch whose COMMIT reached
// Postgres but whose answer did not is replayed, and must count once.
func TestPostgresConnectionsDieMidBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		viaPx bool
		kill  func(t *testing.T, admin *pgxpool.Pool, px *pgtest.Proxy)
		// replays says the fault always lands after a COMMIT, so the
		// worker must replay (and the ledger absorb) each faulted batch.
		replays bool
	}{
		{"proxy cuts every connection", true, func(t *testing.T, _ *pgxpool.Pool, px *pgtest.Proxy) { px.CutAll() }, false},
		{"server terminates the edge's backends", false, func(t *testing.T, admin *pgxpool.Pool, _ *pgtest.Proxy) {
			if _, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = 'mailslot-edge'`); err != nil {
				t.Errorf("terminate backends: %v", err)
			}
		}, false},
		{"answer to COMMIT lost", true, func(t *testing.T, _ *pgxpool.Pool, px *pgtest.Proxy) {
			before := px.CommitAnswersLost()
			px.LoseNextCommitAnswer(true)
			testsync.UntilState(t, 30*time.Second, "a COMMIT answer to be lost", func() (bool, string) {
				return px.CommitAnswersLost() > before, ""
			})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewURL(t)
			pool := pgtest.Pool(t, dbURL)
			var px *pgtest.Proxy
			target := dbURL
			if tt.viaPx {
				px = pgtest.NewProxy(t, pgtest.TargetAddr(t, dbURL))
				target = px.URL(dbURL)
			}
			e := newEdge(t, "node-cut")
			const backlog, distinct = 3000, 1000
			e.submit(backlog, distinct)
			total := e.rows()
			e.start(target, func(o *drain.Options) { o.BatchSize = 150 })

			// Break connections at several points while between 10% and
			// 90% of the backlog is still pending.
			kills := 0
			for _, frac := range []float64{0.85, 0.7, 0.55, 0.4, 0.25} {
				testsync.UntilState(t, 60*time.Second, fmt.Sprintf("pending below %.0f%%", frac*100), func() (bool, string) {
					p := e.out.PendingCount()
					return p <= int64(frac*float64(total)), fmt.Sprint(p, " pending")
				})
				if p := e.out.PendingCount(); p < total/10 {
					break
				}
				tt.kill(t, pool, px)
				kills++
			}
			if kills < 2 {
				t.Errorf("broke the connections only %d times mid-backlog; the backlog drained too fast to test", kills)
			}
			e.waitDrained(120 * time.Second)
			checkExact(t, pool, distinct, e)
			replayed := e.status().RowsReplayed
			t.Logf("broke connections %d times; worker replayed %d rows", kills, replayed)
			if tt.replays && replayed < int64(kills) {
				t.Errorf("worker replayed %d rows after %d lost COMMIT answers; want at least one batch each", replayed, kills)
			}
		})
	}
}

func TestSchemaBehindKeepsAcceptingAndSyncsNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		before, during int // sign-ups before the worker starts, and while behind
		distinct       int
	}{
		{"with a backlog", 20, 5, 5},
		{"with nothing to sync", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewEmptyURL(t)
			e := newEdge(t, "node-behind")
			e.submit(tt.before, max(tt.distinct, 1))
			e.start(dbURL)
			if err := e.w.Signals.BackingOff.WaitOrTimeout(); err == nil || !strings.Contains(err.Error(), "mailslotctl migrate") {
				t.Fatalf("backing off with %v; want the schema gate's advice to migrate", err)
			}
			e.submit(tt.during, max(tt.distinct, 1)) // still accepting
			st := e.status()
			if st.State != drain.StateSchemaBehind || !strings.Contains(st.LastError, "mailslotctl migrate") || !st.PostgresReachable ||
				st.SchemaVersion != 0 || st.SchemaRequired != pgschema.Required() {
				t.Errorf("schema behind: %+v; want last_error naming `mailslotctl migrate`, Postgres reachable, version 0 of %d",
					st, pgschema.Required())
			}
			if st.Pending != e.rows() || st.SyncedRetained != 0 || st.RowsSynced != 0 || st.Quarantined != 0 {
				t.Errorf("schema behind: pending %d of %d, synced %d/%d, quarantined %d; want nothing marked",
					st.Pending, e.rows(), st.SyncedRetained, st.RowsSynced, st.Quarantined)
			}

			conn, err := pgx.Connect(context.Background(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var tables int
			if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'mailslot'`).Scan(&tables); err != nil || tables != 0 {
				t.Fatalf("the edge created %d tables (err %v); it must never run DDL", tables, err)
			}
			if _, err := pgschema.Migrate(context.Background(), conn); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			// No round finishes while the schema is behind: the first one
			// after the migration syncs the whole backlog (fewer rows than
			// a batch) and lands it before it ends.
			e.w.Signals.RoundFinished.WaitOrTimeout()
			if st := e.status(); st.Pending != 0 || st.SchemaVersion != pgschema.Required() {
				t.Errorf("after the first round past the gate: %+v; want nothing pending, schema %d", st, pgschema.Required())
			}
			checkExact(t, pgtest.Pool(t, dbURL), tt.distinct, e)
			if st := e.status(); st.State == drain.StateSchemaBehind || st.LastError != "" {
				t.Errorf("after migrate: state %s, last_error %q; want the advice gone", st.State, st.LastError)
			}
		})
	}
}

func TestTwoEdgesSyncConcurrently(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	a, b := newEdge(t, "node-a"), newEdge(t, "node-b")
	b.reverse = true
	const distinct = 300 // both edges see every address
	a.submit(2000, distinct)
	b.submit(1500, distinct)
	a.start(dbURL)
	b.start(dbURL)
	var wg sync.WaitGroup
	for _, e := range []*edgeNode{a, b} {
		wg.Add(1)
		go func() { // and keep accepting while both drain
			defer wg.Done()
			for range 5 {
				e.submit(100, distinct)
			}
		}()
	}
	wg.Wait()
	a.waitDrained(120 * time.Second)
	b.waitDrained(120 * time.Second)
	checkExact(t, pool, distinct, a, b)
	for _, e := range []*edgeNode{a, b} {
		if logs := e.logs.String(); strings.Contains(logs, "deadlock") || strings.Contains(logs, "40P01") {
			t.Errorf("%s hit a deadlock while syncing:\n%s", e.id, logs)
		}
	}
}

// insertRaw writes a row into the outbox file behind the edge's back, as
// a corrupted or hand-edited file would hold it.
func insertRaw(t *testing.T, e *edgeNode, kind mailslot.Kind, payload string, emailHMAC []byte) int64 {
	t.Helper()
	var seq int64
	err := e.out.Do(context.Background(), func(ctx context.Context, tx *outbox.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, node_id, kind, received_at, payload, email_hmac) VALUES (?, ?, ?, ?, ?, ?)`,
			uuid.NewString(), e.id, string(kind), time.Now().UnixMilli(), payload, emailHMAC)
		if err != nil {
			return err
		}
		tx.AddPending(1)
		seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		t.Fatalf("insert raw outbox row: %v", err)
	}
	return seq
}

func TestPoisonRowIsQuarantined(t *testing.T) {
	t.Parallel()
	nulName := func() string {
		r := leadRecord("poison@example.com", "A\x00B") // encoding/json writes \u0000
		return string(r.Payload)
	}()
	if !strings.Contains(nulName, `\u0000`) {
		t.Fatalf("fixture payload has no NUL escape: %s", nulName)
	}
	tests := []struct {
		name    string
		kind    mailslot.Kind
		payload string
		reason  string // in the quarantine reason
	}{
		{"Postgres refuses a NUL in the name", mailslot.KindLead, nulName, "0x00"},
		{"lead payload is not JSON", mailslot.KindLead, `{"email": "poison@example.com", `, "lead payload"},
		{"event payload is not JSON", mailslot.KindEvent, `not json`, "event payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := pgtest.NewURL(t)
			pool := pgtest.Pool(t, dbURL)
			e := newEdge(t, "node-poison")
			const distinct = 4
			e.submit(6, distinct)
			seq := insertRaw(t, e, tt.kind, tt.payload, hasher.Email("poison@example.com"))
			e.submit(6, distinct) // behind the poison, in the same batch and later ones
			e.start(dbURL, func(o *drain.Options) { o.BatchSize = 5 })
			e.waitDrained(30 * time.Second)
			st := e.status()
			if st.Quarantined != 1 {
				t.Errorf("Status.Quarantined = %d, want 1", st.Quarantined)
			}
			var reason string
			db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, outbox.FileName)+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.QueryRow(`SELECT coalesce(quarantine_reason, '') FROM outbox WHERE seq = ? AND quarantined_at IS NOT NULL AND synced_at IS NULL`, seq).Scan(&reason); err != nil {
				t.Fatalf("poison row %d is not quarantined: %v", seq, err)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("quarantine reason %q, want it to mention %q", reason, tt.reason)
			}
			var inLedger bool
			if err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM mailslot.ledger WHERE node_id = $1 AND seq = $2)`, e.id, seq).Scan(&inLedger); err != nil || inLedger {
				t.Errorf("poison row in the ledger: %v %v", inLedger, err)
			}
			// Everything else arrived exactly once; the node's counters
			// leave the poison row out.
			got := readCounts(t, pool)
			want := pgCounts{Ledger: e.rows(), Leads: distinct, Consent: int64(e.leads), Events: int64(e.events), Submissions: int64(e.leads)}
			if got != want {
				t.Errorf("Postgres holds %+v, want %+v", got, want)
			}
		})
	}
}

func TestRetentionPrunesOnlyOldSyncedRows(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	e := newEdge(t, "node-retention")
	const retention = 1500 * time.Millisecond
	withRetention := func(o *drain.Options) { o.Retention = retention }

	e.submit(8, 8) // old rows
	e.start(dbURL, withRetention)
	e.waitDrained(30 * time.Second)
	e.stop()
	oldSeqs := e.out.LastSeq()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, outbox.FileName)+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var syncedAt int64
	if err := db.QueryRow(`SELECT max(synced_at) FROM outbox`).Scan(&syncedAt); err != nil {
		t.Fatal(err)
	}
	// Let the old rows age past the retention window (time is the input here).
	time.Sleep(time.Until(time.UnixMilli(syncedAt).Add(retention + 100*time.Millisecond)))

	e.submit(4, 8) // new rows, synced now
	e.start(dbURL, withRetention)
	testsync.UntilState(t, 30*time.Second, "old rows pruned", func() (bool, string) {
		st := e.status()
		return st.Pending == 0 && st.SyncedRetained == e.rows()-oldSeqs, fmt.Sprintf("%+v", st)
	})
	var oldLeft, newLeft int64
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE seq <= ?), count(*) FILTER (WHERE seq > ?) FROM outbox`, oldSeqs, oldSeqs).
		Scan(&oldLeft, &newLeft); err != nil {
		t.Fatal(err)
	}
	if oldLeft != 0 || newLeft != e.rows()-oldSeqs {
		t.Errorf("outbox keeps %d old and %d new rows; want 0 and %d", oldLeft, newLeft, e.rows()-oldSeqs)
	}
	// Pruning is local: Postgres keeps everything.
	if got := readCounts(t, pool); got.Ledger != e.rows() {
		t.Errorf("Postgres ledger has %d rows, want %d", got.Ledger, e.leads+e.events)
	}
}

// TestBatchesInFlightTogetherKeepEveryLink syncs one row per batch with
// several batches in flight, so that each event follows its sign-up in the
// next batch: every event must still find its lead, and every row arrive
// once.
func TestBatchesInFlightTogetherKeepEveryLink(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	e := newEdge(t, "node-pipelined")
	const distinct = 20
	e.submit(100, distinct)
	e.start(dbURL, func(o *drain.Options) { o.BatchSize, o.Parallel = 1, 4 })
	e.waitDrained(60 * time.Second)
	checkExact(t, pool, distinct, e)
	var unlinked int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM mailslot.events WHERE lead_id IS NULL`).Scan(&unlinked); err != nil {
		t.Fatal(err)
	}
	if unlinked != 0 {
		t.Errorf("%d of %d events lost the link to their sign-up's lead", unlinked, e.events)
	}
}
