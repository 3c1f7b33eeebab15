package outbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
)

const node = "node-a"

func open(t *testing.T, dir string, edit ...func(*outbox.Options)) *outbox.Outbox {
	t.Helper()
	opts := outbox.Options{Dir: dir, NodeID: node, GroupCommit: true}
	for _, f := range edit {
		f(&opts)
	}
	out, err := outbox.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	t.Cleanup(func() { _ = out.Close() })
	return out
}

var ids atomic.Int64

// sub is a one-record lead submission with a unique id.
func sub(idemKey string, body string) outbox.Submission {
	id := fmt.Sprintf("id-%d", ids.Add(1))
	return outbox.Submission{
		Records: []outbox.Record{{
			ID: id, Kind: mailslot.KindLead, ReceivedAt: time.Now(),
			Payload: []byte(`{"body":"` + body + `"}`), EmailHMAC: []byte("e"), IPHMAC: []byte("i"),
		}},
		IdemKey:  idemKey,
		BodyHash: []byte(body),
		Response: id,
	}
}

func mustSubmit(t *testing.T, out *outbox.Outbox, s outbox.Submission) outbox.Receipt {
	t.Helper()
	rc, err := out.Submit(context.Background(), s)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return rc
}

func count(t *testing.T, out *outbox.Outbox, query string, args ...any) int {
	t.Helper()
	var n int
	if err := out.DB().QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestSeqsAreMonotonic(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir())
	var last int64
	for i := range 5 {
		rc := mustSubmit(t, out, sub("", "x"))
		if rc.FirstSeq <= last || rc.LastSeq != rc.FirstSeq {
			t.Fatalf("submission %d: seqs %d..%d after %d", i, rc.FirstSeq, rc.LastSeq, last)
		}
		last = rc.LastSeq
	}
	multi := outbox.Submission{Response: "batch"}
	for i := range 3 {
		multi.Records = append(multi.Records, outbox.Record{ID: fmt.Sprintf("multi-%d", i), Kind: mailslot.KindEvent, ReceivedAt: time.Now(), Payload: []byte(`{}`)})
	}
	rc := mustSubmit(t, out, multi)
	if rc.FirstSeq != last+1 || rc.LastSeq != rc.FirstSeq+2 || rc.Response != "batch" {
		t.Errorf("3-record receipt = %+v, want seqs %d..%d", rc, last+1, last+3)
	}
	if out.LastSeq() != rc.LastSeq {
		t.Errorf("LastSeq() = %d, want %d", out.LastSeq(), rc.LastSeq)
	}

	// Concurrent submitters get distinct seqs that leave no gap.
	const workers, each = 8, 25
	var mu sync.Mutex
	var seqs []int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				rc, err := out.Submit(context.Background(), sub("", "c"))
				if err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, rc.FirstSeq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, s := range seqs {
		if want := rc.LastSeq + 1 + int64(i); s != want {
			t.Fatalf("concurrent seqs %v…: position %d is %d, want %d", seqs[:min(len(seqs), 10)], i, s, want)
		}
	}
	if got := count(t, out, `SELECT count(DISTINCT seq) FROM outbox WHERE node_id = ?`, node); got != 5+3+workers*each {
		t.Errorf("%d distinct seqs stored, want %d", got, 5+3+workers*each)
	}
}

// walCommits counts the commit frames in the current generation of the
// outbox's WAL: one per committed write transaction. It also returns the
// generation's salt, so that a caller can tell the WAL was not restarted
// (and its count reset) in between. See https://sqlite.org/fileformat.html#walformat.
func walCommits(t *testing.T, dir string) (int, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, outbox.FileName+"-wal"))
	if err != nil {
		t.Fatalf("read WAL: %v", err)
	}
	if len(b) < 32 {
		return 0, nil
	}
	pageSize := int(binary.BigEndian.Uint32(b[8:12]))
	salt := b[16:24]
	n := 0
	for off := 32; off+24+pageSize <= len(b); off += 24 + pageSize {
		frame := b[off : off+24]
		if !bytes.Equal(frame[8:16], salt) {
			break // left over from an earlier generation
		}
		if binary.BigEndian.Uint32(frame[4:8]) != 0 { // database size after commit: set only on a commit frame
			n++
		}
	}
	return n, slices.Clone(salt)
}

// holdSnapshot keeps a read transaction open on the outbox until the test
// ends. While a reader uses the WAL, SQLite can neither restart it nor
// overwrite its frames, so commit frames can be counted across a test.
func holdSnapshot(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, outbox.FileName)+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(context.Background(), "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		_ = conn.Close()
		_ = db.Close()
	})
}

// TestGroupCommit counts the transactions that concurrent submissions
// become, from the commit frames in the WAL. With group commit they share
// transactions; without it (the control) each is its own, which shows that
// the count measures transactions.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	const workers, each = 32, 4
	for _, group := range []bool{true, false} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			dir := t.TempDir()
			out := open(t, dir, func(o *outbox.Options) { o.GroupCommit = group })
			mustSubmit(t, out, sub("", "warm-up")) // the WAL holds frames before the snapshot
			holdSnapshot(t, dir)
			before, salt := walCommits(t, dir)

			start := make(chan struct{})
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					<-start
					for range each {
						if _, err := out.Submit(context.Background(), sub("", "g")); err != nil {
							t.Errorf("submit: %v", err)
						}
					}
				})
			}
			close(start)
			wg.Wait()

			after, salt2 := walCommits(t, dir)
			if !bytes.Equal(salt, salt2) {
				t.Fatal("the WAL was restarted during the test; commits cannot be counted")
			}
			txs, subs := after-before, workers*each
			t.Logf("%d submissions in %d transactions", subs, txs)
			switch {
			case group && (txs < 1 || txs >= subs):
				t.Errorf("%d submissions took %d transactions, want fewer", subs, txs)
			case !group && txs != subs:
				t.Errorf("without group commit %d submissions took %d transactions, want one each", subs, txs)
			}
			if n := count(t, out, `SELECT count(*) FROM outbox`); n != subs+1 {
				t.Errorf("%d rows, want %d", n, subs+1)
			}
		})
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir())
	first := mustSubmit(t, out, sub("k1", "body"))
	if first.Replayed {
		t.Fatal("first submission marked replayed")
	}
	again := sub("k1", "body")
	rc := mustSubmit(t, out, again)
	if !rc.Replayed || rc.Response != first.Response || rc.FirstSeq != first.FirstSeq {
		t.Errorf("replay receipt = %+v, want the first (%+v) replayed", rc, first)
	}
	if _, err := out.Submit(context.Background(), sub("k1", "other body")); !errors.Is(err, outbox.ErrIdempotencyConflict) {
		t.Errorf("same key, other body: %v, want ErrIdempotencyConflict", err)
	}
	// Keys are scoped by kind.
	ev := sub("k1", "body")
	ev.Records[0].Kind = mailslot.KindEvent
	if rc := mustSubmit(t, out, ev); rc.Replayed {
		t.Error("an event replayed a lead's key")
	}
	if n := count(t, out, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
	if out.PendingCount() != 2 {
		t.Errorf("PendingCount() = %d, want 2: a replay stores nothing", out.PendingCount())
	}
}

func TestFullPastMaxPendingRows(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir(), func(o *outbox.Options) { o.MaxPendingRows = 3 })
	var seqs []int64
	for range 3 {
		seqs = append(seqs, mustSubmit(t, out, sub("", "x")).FirstSeq)
	}
	if _, err := out.Submit(context.Background(), sub("", "x")); !errors.Is(err, outbox.ErrFull) {
		t.Fatalf("submission past the limit: %v, want ErrFull", err)
	}
	if err := out.Health(); !errors.Is(err, outbox.ErrFull) {
		t.Errorf("Health() = %v, want ErrFull", err)
	}
	if n := count(t, out, `SELECT count(*) FROM outbox`); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	// Once sync catches up, the outbox takes work again.
	if err := out.MarkSynced(context.Background(), seqs[:1], time.Now()); err != nil {
		t.Fatal(err)
	}
	testsync.UntilState(t, 10*time.Second, "the outbox to take work after a row synced", func() (bool, string) {
		err := out.Health()
		return err == nil, fmt.Sprint(err)
	})
	mustSubmit(t, out, sub("", "x"))
}

func TestMarkSyncedQuarantinePrune(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := open(t, dir)
	ctx := context.Background()
	var seqs []int64
	for range 5 {
		seqs = append(seqs, mustSubmit(t, out, sub("k"+fmt.Sprint(len(seqs)), "x")).FirstSeq)
	}
	check := func(step string, pending, synced, quarantined int64) {
		t.Helper()
		st, err := out.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != pending || st.Synced != synced || st.Quarantined != quarantined || out.PendingCount() != pending {
			t.Errorf("%s: stats %+v, PendingCount %d; want pending %d, synced %d, quarantined %d",
				step, st, out.PendingCount(), pending, synced, quarantined)
		}
		if st.LastSeq != seqs[4] || st.NodeID != node {
			t.Errorf("%s: stats %+v, want last seq %d of %s", step, st, seqs[4], node)
		}
		// The counts are counters the writer keeps; they must agree with
		// the table itself.
		table := [3]int64{
			int64(count(t, out, `SELECT count(*) FROM outbox WHERE synced_at IS NULL AND quarantined_at IS NULL`)),
			int64(count(t, out, `SELECT count(*) FROM outbox WHERE synced_at IS NOT NULL`)),
			int64(count(t, out, `SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL`)),
		}
		if got := [3]int64{st.Pending, st.Synced, st.Quarantined}; got != table {
			t.Errorf("%s: counters say pending/synced/quarantined %v, the table %v", step, got, table)
		}
	}
	check("submitted", 5, 0, 0)

	syncedAt := time.Now()
	if err := out.MarkSynced(ctx, seqs[:2], syncedAt); err != nil {
		t.Fatal(err)
	}
	check("two synced", 3, 2, 0)
	// Marking again changes nothing: the counter must not drift.
	if err := out.MarkSynced(ctx, seqs[:2], syncedAt); err != nil {
		t.Fatal(err)
	}
	check("synced twice", 3, 2, 0)

	if err := out.Quarantine(ctx, seqs[2], "refused by postgres"); err != nil {
		t.Fatal(err)
	}
	if err := out.Quarantine(ctx, seqs[2], "again"); err != nil {
		t.Fatal(err)
	}
	check("one quarantined", 2, 2, 1)

	// A requeue (reconcile --fix) makes a synced and a quarantined row
	// pending again; each state's count gives up its own.
	if n, err := out.Requeue(ctx, []int64{seqs[1], seqs[2], seqs[3]}); err != nil || n != 2 {
		t.Fatalf("requeue: %d, %v; want 2 rows changed", n, err)
	}
	check("requeued", 4, 1, 0)
	if err := out.MarkSynced(ctx, seqs[1:2], syncedAt); err != nil {
		t.Fatal(err)
	}
	if err := out.Quarantine(ctx, seqs[2], "refused by postgres"); err != nil {
		t.Fatal(err)
	}
	check("synced and quarantined again", 2, 2, 1)

	st, _ := out.Stats(ctx)
	if st.OldestPendingAt == nil {
		t.Error("no OldestPendingAt with rows pending")
	}
	pending, err := out.Pending(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].Seq != seqs[3] || pending[1].Seq != seqs[4] {
		t.Errorf("Pending = %v, want seqs %v", pending, seqs[3:])
	}

	n, err := out.Prune(ctx, syncedAt.Add(-time.Hour))
	if err != nil || n != 0 {
		t.Errorf("prune before the sync time: %d, %v; want 0", n, err)
	}
	n, err = out.Prune(ctx, syncedAt.Add(time.Second))
	if err != nil || n != 2 {
		t.Errorf("prune after the sync time: %d, %v; want 2", n, err)
	}
	check("pruned", 2, 0, 1)
	if err := out.MarkSynced(ctx, seqs[3:4], time.Now()); err != nil {
		t.Fatal(err)
	}
	check("one more synced", 1, 1, 1)
	// Reopening counts the table once.
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	out = open(t, dir)
	check("reopened", 1, 1, 1)
	if c := count(t, out, `SELECT count(*) FROM idempotency`); c != 0 {
		t.Errorf("%d idempotency keys survive a prune past their time, want 0", c)
	}
}

func TestRestartContinuesSequence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := open(t, dir)
	var last int64
	for range 3 {
		last = mustSubmit(t, out, sub("", "x")).LastSeq
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	out = open(t, dir)
	if out.LastSeq() != last || out.PendingCount() != 3 {
		t.Errorf("after reopening: LastSeq %d PendingCount %d, want %d and 3", out.LastSeq(), out.PendingCount(), last)
	}
	if rc := mustSubmit(t, out, sub("", "x")); rc.FirstSeq <= last {
		t.Errorf("seq after restart = %d, want > %d", rc.FirstSeq, last)
	}
}

// TestSeqsNeverReused prunes the highest rows, reopens, and checks that the
// next seq is still past them: (node_id, seq) must never name two
// submissions, and Postgres may already hold the pruned ones.
func TestSeqsNeverReused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := open(t, dir)
	ctx := context.Background()
	var seqs []int64
	for range 5 {
		seqs = append(seqs, mustSubmit(t, out, sub("", "x")).FirstSeq)
	}
	at := time.Now()
	if err := out.MarkSynced(ctx, seqs, at); err != nil {
		t.Fatal(err)
	}
	if n, err := out.Prune(ctx, at.Add(time.Second)); err != nil || n != 5 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if n := count(t, out, `SELECT count(*) FROM outbox`); n != 0 {
		t.Fatalf("%d rows after pruning all, want 0", n)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	out = open(t, dir)
	if rc := mustSubmit(t, out, sub("", "x")); rc.FirstSeq <= seqs[4] {
		t.Errorf("seq after pruning and reopening = %d, want > %d", rc.FirstSeq, seqs[4])
	}
}

func TestOtherNodesFileRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := open(t, dir)
	mustSubmit(t, out, sub("", "x"))
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	other, err := outbox.Open(context.Background(), outbox.Options{Dir: dir, NodeID: "node-b"})
	if err == nil {
		other.Close()
		t.Fatal("node-b opened node-a's outbox")
	}
	if !strings.Contains(err.Error(), "node-a") {
		t.Errorf("error %q does not name the owner", err)
	}
	if _, err := outbox.Open(context.Background(), outbox.Options{Dir: t.TempDir()}); err == nil {
		t.Error("opened an outbox without a node id")
	}
	// The owner still can.
	open(t, dir)
}

func TestClose(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir())
	mustSubmit(t, out, sub("", "x"))
	for i := range 2 {
		if err := out.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if _, err := out.Submit(context.Background(), sub("", "x")); !errors.Is(err, outbox.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
	if err := out.Do(context.Background(), func(context.Context, *outbox.Tx) error { return nil }); !errors.Is(err, outbox.ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
	if err := out.Health(); !errors.Is(err, outbox.ErrClosed) {
		t.Errorf("Health after Close: %v, want ErrClosed", err)
	}
}

// TestCloseKeepsAcknowledged closes the outbox under load: every
// submission that returned without error is in the file afterwards, and
// the others were refused with ErrClosed.
func TestCloseKeepsAcknowledged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := open(t, dir)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		n     atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			for {
				s := sub("", "x")
				_, err := out.Submit(context.Background(), s)
				if err != nil {
					if !errors.Is(err, outbox.ErrClosed) {
						t.Errorf("submit during close: %v", err)
					}
					return
				}
				n.Add(1)
				mu.Lock()
				acked = append(acked, s.Records[0].ID)
				mu.Unlock()
			}
		})
	}
	testsync.Until(t, 30*time.Second, "100 acknowledged submissions", func() bool { return n.Load() >= 100 })
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	out = open(t, dir)
	for _, id := range acked {
		if n := countRow(t, out, id); n != 1 {
			t.Errorf("acknowledged %s: %d rows after close", id, n)
		}
	}
	t.Logf("%d submissions acknowledged before Close", len(acked))
}

func countRow(t *testing.T, out *outbox.Outbox, id string) int {
	return count(t, out, `SELECT count(*) FROM outbox WHERE id = ?`, id)
}

// enqueued is a context that reports when the outbox has queued a job
// made with it: the outbox's enqueue reads Done once before its send to the
// writer's queue and once after, while waiting for the answer.
type enqueued struct {
	context.Context
	mu     sync.Mutex
	calls  int
	queued chan struct{}
}

func newEnqueued() *enqueued {
	return &enqueued{Context: context.Background(), queued: make(chan struct{})}
}

func (c *enqueued) Done() <-chan struct{} {
	c.mu.Lock()
	c.calls++
	if c.calls == 2 {
		close(c.queued)
	}
	c.mu.Unlock()
	return c.Context.Done()
}

func (c *enqueued) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.queued:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not queued within 10s", what)
	}
}

// TestDoFailureRollsBackOnlyItself puts a submission and a failing Do
// function into one writer transaction: the function's changes are rolled
// back, the submission's are committed.
func TestDoFailureRollsBackOnlyItself(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir())
	ctx := context.Background()
	before := mustSubmit(t, out, sub("", "before"))

	// Hold the writer inside a first transaction while the two jobs queue,
	// so that its next batch takes both.
	started, release := make(chan struct{}), make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- out.Do(ctx, func(context.Context, *outbox.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started

	s := sub("", "survivor")
	subCtx := newEnqueued()
	subErr := make(chan error, 1)
	go func() {
		_, err := out.Submit(subCtx, s)
		subErr <- err
	}()
	subCtx.wait(t, "the submission")

	errBoom := errors.New("boom")
	sawSubmission := false
	doCtx := newEnqueued()
	doErr := make(chan error, 1)
	go func() {
		doErr <- out.Do(doCtx, func(ctx context.Context, tx *outbox.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE id = ?`, s.Records[0].ID).Scan(&n); err != nil {
				return err
			}
			sawSubmission = n == 1
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('scratch', 'x')`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET payload = '{}', synced_at = 1`); err != nil {
				return err
			}
			tx.AddPending(-100)
			return errBoom
		})
	}()
	doCtx.wait(t, "the failing function")
	close(release)

	if err := <-blocker; err != nil {
		t.Fatalf("blocking Do: %v", err)
	}
	if err := <-doErr; !errors.Is(err, errBoom) {
		t.Errorf("failing Do returned %v, want its own error", err)
	}
	if err := <-subErr; err != nil {
		t.Fatalf("the submission beside the failing function: %v", err)
	}
	if !sawSubmission {
		t.Error("the failing function did not see the submission: they did not share a transaction")
	}
	if n := countRow(t, out, s.Records[0].ID); n != 1 {
		t.Errorf("the submission has %d rows, want 1", n)
	}
	if n := count(t, out, `SELECT count(*) FROM meta WHERE name = 'scratch'`); n != 0 {
		t.Error("the failing function's insert was committed")
	}
	if n := count(t, out, `SELECT count(*) FROM outbox WHERE payload = '{}' OR synced_at IS NOT NULL`); n != 0 {
		t.Errorf("the failing function's update reached %d rows", n)
	}
	if out.PendingCount() != 2 || out.LastSeq() != before.LastSeq+1 {
		t.Errorf("PendingCount %d LastSeq %d, want 2 and %d: the failed function's AddPending counted", out.PendingCount(), out.LastSeq(), before.LastSeq+1)
	}
}

// TestBatchedSubmissionsGetTheirOwnSeqs submits many multi-record
// submissions at once, some with idempotency keys, so that the writer
// commits them together (unkeyed ones in multi-row INSERTs): every receipt
// must name exactly its own records, in order.
func TestBatchedSubmissionsGetTheirOwnSeqs(t *testing.T) {
	t.Parallel()
	out := open(t, t.TempDir())
	const subs = 300
	type sent struct {
		ids []string
		rc  outbox.Receipt
	}
	got := make([]sent, subs)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Go(func() {
			s := sub("", fmt.Sprint(i))
			if i%7 == 0 {
				s.IdemKey = fmt.Sprintf("key-%d", i)
			}
			for range i % 3 { // 1 to 3 records
				r := s.Records[0]
				r.ID = fmt.Sprintf("id-%d", ids.Add(1))
				s.Records = append(s.Records, r)
			}
			for _, r := range s.Records {
				got[i].ids = append(got[i].ids, r.ID)
			}
			got[i].rc = mustSubmit(t, out, s)
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, g := range got {
		if n := g.rc.LastSeq - g.rc.FirstSeq + 1; n != int64(len(g.ids)) {
			t.Fatalf("submission %d: seqs %d..%d for %d records", i, g.rc.FirstSeq, g.rc.LastSeq, len(g.ids))
		}
		for k, id := range g.ids {
			seq := g.rc.FirstSeq + int64(k)
			if seen[seq] {
				t.Fatalf("seq %d handed to two records", seq)
			}
			seen[seq] = true
			var stored string
			if err := out.DB().QueryRow(`SELECT id FROM outbox WHERE seq = ?`, seq).Scan(&stored); err != nil || stored != id {
				t.Errorf("submission %d record %d: seq %d holds %q (%v), want %q", i, k, seq, stored, err, id)
			}
		}
	}
}
