package main

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/outbox"
)

// TestRecover restores a node's outbox from its replica and syncs what
// Postgres lacks, with exact counts: rows Postgres holds are not applied
// again, a row deleted from Postgres by hand is, a row an erasure covers is
// recorded without its content, and a poison row is quarantined. A second
// run applies nothing.
func TestRecover(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	replicaURL := "file://" + filepath.ToSlash(t.TempDir())
	dir := t.TempDir()
	const id = "edge-lost"

	// Seqs 1-4 reach Postgres.
	e := startInproc(t, edgeEnv(id, dir, dbURL, replicaURL))
	load(t, e.URL, "synced", 2, 2)
	waitSynced(t, e.PrivateURL)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	// Seqs 5-12 do not: Postgres is out of reach. Seq 12 is poison.
	e = startInproc(t, edgeEnv(id, dir, closedURL(t), replicaURL))
	load(t, e.URL, "pending", 4, 3)
	_, err := e.Outbox.Submit(context.Background(), outbox.Submission{Records: []outbox.Record{{
		ID: uuid.NewString(), Kind: mailslot.KindLead, ReceivedAt: time.Now(), Payload: []byte(`{"property":"example.com"}`),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	waitReplicated(t, e.PrivateURL)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	// An operator deletes seq 3 from Postgres, and pending-0@example.com
	// (seq 5) is erased before its row arrives.
	deleteByHand(t, pool, id, []int64{3})
	hasher := pii.NewHasher([]byte(edgetest.IPPepper))
	if _, err := pool.Exec(context.Background(), `INSERT INTO mailslot.tombstones (email_hmac, erased_at, requested_by) VALUES ($1, now(), 'operator')`,
		hasher.Email("pending-0@example.com")); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL}
	stdout, stderr, err := ctl(t, env, "recover", "--node", id, "--json")
	if code := exitCode(err); code != exitMissing {
		t.Fatalf("recover with a poison row: exit %d (%v), want %d\n%s\n%s", code, err, exitMissing, stdout, stderr)
	}
	rep := decodeJSON[recoverReport](t, stdout)
	want := recoverReport{NodeID: id, Replica: rep.Replica, ReplicaTXID: rep.ReplicaTXID, Restored: 12, RestoredFirstSeq: 1, RestoredLastSeq: 12,
		AlreadyInPostgres: 3, Applied: 8, AppliedAsErased: 1, Quarantined: 1, DurationSeconds: rep.DurationSeconds,
		QuarantinedRows: rep.QuarantinedRows}
	if !equalReports(rep, want) || len(rep.QuarantinedRows) != 1 || rep.QuarantinedRows[0].Seq != 12 || rep.ReplicaTXID == 0 {
		t.Fatalf("recover = %+v\nwant      %+v", rep, want)
	}
	if !strings.HasSuffix(rep.Replica, "/"+id) {
		t.Errorf("report names replica %q", rep.Replica)
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-lost'`:                        11,
		`SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-lost' AND outcome = 'erased'`: 1,
		`SELECT count(*) FROM mailslot.leads`:                                                     5, // 6 sign-ups, one erased
		`SELECT count(*) FROM mailslot.leads WHERE email = 'pending-0@example.com'`:               0,
		`SELECT count(*) FROM mailslot.events`:                                                    5,
	} {
		if n := count(t, pool, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}

	// Again: everything but the poison row is already there.
	stdout, stderr, err = ctl(t, env, "recover", "--node", id)
	if exitCode(err) != exitMissing {
		t.Fatalf("second recover: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, w := range []string{"recovered node edge-lost from file://", "12  restored rows (seqs 1-12)", "11  already in Postgres",
		" 0  applied now (0 of them recorded as erased", " 1  quarantined", "quarantined seq 12: lead payload lacks consent",
		"next: mailslotctl reconcile"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("table lacks %q:\n%s", w, stdout)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-lost'`); n != 11 {
		t.Errorf("second recover changed the ledger: %d rows", n)
	}
	if err := err.Error(); !strings.Contains(err, "1 restored row(s) are not in Postgres") {
		t.Errorf("error = %q", err)
	}
}

func equalReports(a, b recoverReport) bool {
	a.QuarantinedRows, b.QuarantinedRows = nil, nil
	a.ConflictSeqs, b.ConflictSeqs = nil, nil
	return reflect.DeepEqual(a, b)
}

// TestRecoverErrors: each failure names what is wrong and the fix.
func TestRecoverErrors(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	replicaURL := "file://" + filepath.ToSlash(t.TempDir())
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no node", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL}, nil, 2, "--node is required"},
		{"no replica url", map[string]string{"DATABASE_URL": dbURL}, []string{"--node", "n"}, 2, "set MAILSLOT_REPLICA_URL"},
		{"bad replica url", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": "ftp://x/y"}, []string{"--node", "n"}, 2, "MAILSLOT_REPLICA_URL must be a file:// or s3:// URL"},
		{"endpoint with file", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL, "MAILSLOT_REPLICA_ENDPOINT": "https://x"},
			[]string{"--node", "n"}, 2, "MAILSLOT_REPLICA_ENDPOINT applies only with an s3://"},
		{"no database", map[string]string{"MAILSLOT_REPLICA_URL": replicaURL}, []string{"--node", "n"}, 2, "set DATABASE_URL"},
		{"postgres down", map[string]string{"DATABASE_URL": closedURL(t), "MAILSLOT_REPLICA_URL": replicaURL}, []string{"--node", "n"}, 1, "is it running?"},
		{"unknown node", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL}, []string{"--node", "ghost"}, 1,
			`no replica for node "ghost" under file://`},
		{"bad node id", map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL}, []string{"--node", "../x"}, 2, `--node: node id "../x" is not valid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := ctl(t, tc.env, append([]string{"recover"}, tc.args...)...)
			if code := exitCode(err); code != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s%s", code, err, tc.code, stdout, stderr)
			}
			if !strings.Contains(err.Error()+stderr, tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}
