package replica_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/replica"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
)

const nodeID = "node-a"

func openOutbox(t *testing.T, dir string) *outbox.Outbox {
	t.Helper()
	out, err := outbox.Open(context.Background(), outbox.Options{Dir: dir, NodeID: nodeID, GroupCommit: true})
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	return out
}

// submit stores n events and returns their ids.
func submit(t *testing.T, out *outbox.Outbox, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		_, err := out.Submit(context.Background(), outbox.Submission{Records: []outbox.Record{{
			ID: ids[i], Kind: mailslot.KindEvent, ReceivedAt: time.Now(),
			Payload: []byte(`{"type":"page_view","property":"example.com"}`),
		}}})
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
	}
	return ids
}

func fileBase(t *testing.T) string {
	t.Helper()
	return "file://" + filepath.ToSlash(t.TempDir())
}

func startReplicator(t *testing.T, base string, out *outbox.Outbox, interval time.Duration) *replica.Replicator {
	t.Helper()
	r, err := replica.New(replica.Options{BaseURL: base, NodeID: nodeID, SyncInterval: interval}, out)
	if err != nil {
		t.Fatalf("new replicator: %v", err)
	}
	r.Signals.Init(t)
	r.Start()
	return r
}

// heldIDs reads the ids and the AUTOINCREMENT high-water mark of an outbox
// file.
func heldIDs(t *testing.T, path string) (ids []string, lastSeq int64) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatalf("read restored rows: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := db.QueryRow(`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`).Scan(&lastSeq); err != nil {
		t.Fatalf("read sqlite_sequence: %v", err)
	}
	return ids, lastSeq
}

func waitReplicated(t *testing.T, r *replica.Replicator, seq int64, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if ok, _ := testsync.Within(timeout, func() (bool, string) { return r.Status(context.Background()).ReplicatedSeq >= seq, "" }); ok {
		return time.Since(start)
	}
	t.Fatalf("seq %d not replicated after %v: %+v", seq, timeout, r.Status(context.Background()))
	return 0
}

// TestReplicateRestore ships a live outbox to a file:// replica and
// restores it elsewhere: every row and the sequence's high-water mark come
// back, and the lag while idle is zero.
func TestReplicateRestore(t *testing.T) {
	t.Parallel()
	base := fileBase(t)
	out := openOutbox(t, t.TempDir())
	r := startReplicator(t, base, out, 50*time.Millisecond)
	want := submit(t, out, 200)
	waitReplicated(t, r, out.LastSeq(), 30*time.Second)
	st := r.Status(context.Background())
	if st.State != replica.StateReplicating || st.LagSeconds != 0 || st.TXID == 0 || st.LastSyncAt == nil {
		t.Fatalf("status after catching up = %+v", st)
	}
	if !strings.HasSuffix(st.Replica, "/"+nodeID) {
		t.Errorf("status replica %q does not end with the node id", st.Replica)
	}
	want = append(want, submit(t, out, 50)...)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("close replicator: %v", err)
	}

	ok, err := replica.Exists(context.Background(), base, nodeID)
	if err != nil || !ok {
		t.Fatalf("Exists = %v, %v; want true", ok, err)
	}
	dst := filepath.Join(t.TempDir(), "restored", outbox.FileName)
	res, err := replica.Restore(context.Background(), base, nodeID, dst)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.TXID == 0 {
		t.Errorf("restore TXID = 0")
	}
	got, last := heldIDs(t, dst)
	if len(got) != len(want) || last != int64(len(want)) {
		t.Fatalf("restored %d rows up to seq %d, want %d", len(got), last, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("restored row %d = %s, want %s", i+1, got[i], want[i])
		}
	}
	// The restored file is an outbox of the same node.
	restored, err := outbox.Open(context.Background(), outbox.Options{Dir: filepath.Dir(dst), NodeID: nodeID})
	if err != nil {
		t.Fatalf("open restored outbox: %v", err)
	}
	if restored.LastSeq() != int64(len(want)) || restored.PendingCount() != int64(len(want)) {
		t.Errorf("restored outbox last seq %d pending %d", restored.LastSeq(), restored.PendingCount())
	}
	_ = restored.Close()
}

// TestFlushOnClose: with a sync interval far longer than the test, only the
// flush in Close can carry the rows written after the first round.
func TestFlushOnClose(t *testing.T) {
	t.Parallel()
	base := fileBase(t)
	out := openOutbox(t, t.TempDir())
	first := submit(t, out, 3)
	r := startReplicator(t, base, out, time.Hour)
	r.Signals.RoundFinished.WaitOrTimeout() // the first round, then an hour's wait
	later := submit(t, out, 40)
	// Time passing is the point: with an hour's interval nothing may ship
	// the new rows before Close, and the lag must grow.
	time.Sleep(100 * time.Millisecond)
	st := r.Status(context.Background())
	if st.ReplicatedSeq != 3 || st.LastSeq != 43 || st.LagSeconds <= 0 {
		t.Fatalf("status while behind = %+v; want replicated 3 of 43 and a lag", st)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("close replicator: %v", err)
	}
	if st := r.Status(context.Background()); st.ReplicatedSeq != 43 || st.State != replica.StateStopped {
		t.Fatalf("status after close = %+v", st)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	dst := filepath.Join(t.TempDir(), outbox.FileName)
	if _, err := replica.Restore(context.Background(), base, nodeID, dst); err != nil {
		t.Fatalf("restore: %v", err)
	}
	got, _ := heldIDs(t, dst)
	if len(got) != len(first)+len(later) {
		t.Fatalf("restored %d rows, want %d", len(got), len(first)+len(later))
	}
}

// TestLag measures how long a committed row takes to reach a file://
// replica at the default interval of one second.
func TestLag(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	out := openOutbox(t, t.TempDir())
	r := startReplicator(t, fileBase(t), out, time.Second)
	defer func() {
		_ = out.Close()
		_ = r.Close(context.Background())
	}()
	submit(t, out, 1)
	waitReplicated(t, r, 1, 30*time.Second)
	var worst, total time.Duration
	const rounds = 5
	for range rounds {
		submit(t, out, 1)
		d := waitReplicated(t, r, out.LastSeq(), 30*time.Second)
		worst, total = max(worst, d), total+d
	}
	t.Logf("replication lag at MAILSLOT_REPLICA_SYNC_INTERVAL=1s: mean %v, worst %v over %d commits", total/rounds, worst, rounds)
	if worst > 3*time.Second {
		t.Errorf("worst lag %v, want at most about one interval", worst)
	}
}

// TestUnreachableReplica: a replica that cannot be written never stops the
// outbox; the status says why, and Close reports the failed flush.
func TestUnreachableReplica(t *testing.T) {
	t.Parallel()
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocked, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := openOutbox(t, t.TempDir())
	r := startReplicator(t, "file://"+blocked, out, 20*time.Millisecond)
	submit(t, out, 5)
	if err := r.Signals.BackingOff.WaitOrTimeout(); err == nil {
		t.Fatal("backing off without an error")
	}
	if st := r.Status(context.Background()); st.State != replica.StateFailing || st.LastError == "" || st.LastErrorAt == nil || st.ReplicatedSeq != 0 {
		t.Errorf("status = %+v", st)
	}
	submit(t, out, 1) // still accepting
	_ = out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Close(ctx); err == nil {
		t.Fatalf("close with an unwritable replica succeeded")
	}
}

// TestLitestreamCLIRestore checks that Litestream's own CLI reads our
// replica. The CLI is not in go.mod (it brings every cloud SDK); build it
// from the module cache and point MAILSLOT_LITESTREAM_BIN at it:
//
//	cd $(go env GOMODCACHE)/github.com/benbjohnson/litestream@v0.5.18 &&
//	  CGO_ENABLED=0 go build -o /tmp/litestream ./cmd/litestream
func TestLitestreamCLIRestore(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("MAILSLOT_LITESTREAM_BIN")
	if bin == "" {
		t.Skip("MAILSLOT_LITESTREAM_BIN is not set")
	}
	base := fileBase(t)
	out := openOutbox(t, t.TempDir())
	r := startReplicator(t, base, out, time.Hour)
	want := submit(t, out, 30)
	_ = out.Close()
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	nodeURL, _ := replica.NodeURL(base, nodeID)
	dst := filepath.Join(t.TempDir(), "cli.db")
	if b, err := exec.Command(bin, "restore", "-o", dst, nodeURL).CombinedOutput(); err != nil {
		t.Fatalf("litestream restore: %v\n%s", err, b)
	}
	got, last := heldIDs(t, dst)
	if len(got) != len(want) || last != int64(len(want)) || got[0] != want[0] {
		t.Fatalf("litestream restored %d rows up to seq %d, want %d", len(got), last, len(want))
	}
}

func TestRestoreNotFound(t *testing.T) {
	t.Parallel()
	base := fileBase(t)
	ok, err := replica.Exists(context.Background(), base, "nobody")
	if err != nil || ok {
		t.Fatalf("Exists = %v, %v; want false", ok, err)
	}
	dst := filepath.Join(t.TempDir(), outbox.FileName)
	_, err = replica.Restore(context.Background(), base, "nobody", dst)
	if !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("restore of a missing replica: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed restore left %s", dst)
	}
}

func TestNodeURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base, node, want, err string
	}{
		{"file:///var/lib/replicas", "n1", "file:///var/lib/replicas/n1", ""},
		{"file:///var/lib/replicas/", "n1", "file:///var/lib/replicas/n1", ""},
		{"s3://bucket", "n1", "s3://bucket/n1", ""},
		{"s3://bucket/outboxes?endpoint=https%3A%2F%2Ffly.storage.tigris.dev", "148e", "s3://bucket/outboxes/148e?endpoint=https%3A%2F%2Ffly.storage.tigris.dev", ""},
		{"file://relative/path", "n1", "", "absolute path"},
		{"s3:///path", "n1", "", "bucket"},
		{"gs://bucket/path", "n1", "", "file:// or s3://"},
		{"file:///r", "../escape", "", "name a replica: node id"},
		{"file:///r", "a/b", "", "name a replica: node id"},
		{"file:///r", "", "", "name a replica: node id"},
	} {
		got, err := replica.NodeURL(tc.base, tc.node)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("NodeURL(%q, %q) error = %v, want %q", tc.base, tc.node, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("NodeURL(%q, %q) = %q, %v; want %q", tc.base, tc.node, got, err, tc.want)
		}
	}
}

func TestWithEndpoint(t *testing.T) {
	t.Parallel()
	got, err := replica.WithEndpoint("s3://bucket/path", "https://fly.storage.tigris.dev", "auto")
	if err != nil || got != "s3://bucket/path?endpoint=https%3A%2F%2Ffly.storage.tigris.dev&region=auto" {
		t.Errorf("WithEndpoint = %q, %v", got, err)
	}
	got, err = replica.WithEndpoint("s3://bucket/path?endpoint=http%3A%2F%2Fminio%3A9000", "https://other", "")
	if err != nil || got != "s3://bucket/path?endpoint=http%3A%2F%2Fminio%3A9000" {
		t.Errorf("WithEndpoint kept %q, %v; want the URL's own endpoint", got, err)
	}
	if got, err := replica.WithEndpoint("file:///r", "", "us-east-1"); err != nil || got != "file:///r" {
		t.Errorf("WithEndpoint(file) = %q, %v", got, err)
	}
	if _, err := replica.WithEndpoint("file:///r", "https://x", ""); err == nil {
		t.Errorf("an endpoint with a file URL was accepted")
	}
	if d := replica.Display("s3://key:secret@bucket/p?endpoint=x"); d != "s3://bucket/p" {
		t.Errorf("Display = %q", d)
	}
}

// TestRemoveLocalState: the files a lost database leaves beside it go.
func TestRemoveLocalState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, outbox.FileName)
	for _, p := range []string{db + "-wal", db + "-shm", filepath.Join(dir, ".outbox.db-litestream", "ltx", "0", "x")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := replica.RemoveLocalState(db); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Fatalf("left behind: %v", names)
	}
	if err := replica.RemoveLocalState(db); err != nil {
		t.Fatalf("second call: %v", err)
	}
}

func ExampleNodeURL() {
	u, _ := replica.NodeURL("s3://mailslot-replicas/outboxes", "148e21ea")
	fmt.Println(u)
	// Output: s3://mailslot-replicas/outboxes/148e21ea
}
