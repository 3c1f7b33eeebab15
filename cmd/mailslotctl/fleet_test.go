package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
)

// TestMain builds the mailslot binary once for every test here that starts
// real edges (edgetest.Start uses MAILSLOT_BIN when it is set).
func TestMain(m *testing.M) {
	var dir string
	if os.Getenv("MAILSLOT_BIN") == "" {
		var err error
		if dir, err = os.MkdirTemp("", "mailslotctl-test-bin-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bin := filepath.Join(dir, "mailslot")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/mailslot/mailslot/cmd/mailslot")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build cmd/mailslot: %v\n%s", err, out)
			os.Exit(1)
		}
		os.Setenv("MAILSLOT_BIN", bin)
	}
	code := m.Run()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// ctl runs mailslotctl in-process with env as its whole environment.
func ctl(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err = run(ctx, args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var ex exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ex):
		return ex.code
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// closedURL is a Postgres URL on a port nothing listens on.
func closedURL(t *testing.T) string {
	return "postgres://postgres@" + edgetest.FreeAddr(t) + "/mailslot?sslmode=disable&connect_timeout=2"
}

// edgeEnv is the environment of a real or in-process edge for node id,
// with its outbox in dataDir.
func edgeEnv(id, dataDir, dbURL, replicaURL string) map[string]string {
	env := edgetest.Env(dataDir)
	env["MAILSLOT_NODE_ID"] = id
	env["MAILSLOT_REGION"] = "r-" + id
	env["MAILSLOT_SYNC_INTERVAL"] = "20ms"
	env["MAILSLOT_REPLICA_SYNC_INTERVAL"] = "50ms"
	env["MAILSLOT_SHUTDOWN_TIMEOUT"] = "10s"
	if dbURL != "" {
		env["DATABASE_URL"] = dbURL
	}
	if replicaURL != "" {
		env["MAILSLOT_REPLICA_URL"] = replicaURL
	}
	return env
}

// inproc is an edge.Node running in the test process.
type inproc struct {
	*edge.Node
	URL, PrivateURL string
	stop            func() error
}

func startInproc(t *testing.T, env map[string]string) *inproc {
	t.Helper()
	env["MAILSLOT_ADDR"] = "127.0.0.1:0"
	env["MAILSLOT_PRIVATE_ADDR"] = "127.0.0.1:0"
	cfg := edgetest.Config(t, env)
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &inproc{Node: n, URL: "http://" + n.Addr(), PrivateURL: "http://" + n.PrivateAddr(), stop: stop}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// postLead signs up email and returns the submission id.
func postLead(t *testing.T, base, email string) string {
	t.Helper()
	body := fmt.Sprintf(`{"email":%q,"property":"example.com","consent":"express"}`, email)
	var ans struct {
		ID string `json:"id"`
	}
	postJSON(t, base+"/v1/leads", body, &ans)
	if ans.ID == "" {
		t.Fatalf("sign-up answered no id")
	}
	return ans.ID
}

func postEvent(t *testing.T, base string) {
	t.Helper()
	postJSON(t, base+"/v1/events", `{"type":"page_view","property":"example.com","page":"/"}`, nil)
}

func postJSON(t *testing.T, url, body string, into any) {
	t.Helper()
	resp, err := httpClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: status %d: %s", url, resp.StatusCode, b)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
	}
}

// edgeStatus is the part of GET /v1/sync/status these tests read.
type edgeStatus struct {
	NodeID  string `json:"node_id"`
	Pending int64  `json:"pending"`
	LastSeq int64  `json:"last_seq"`
	Outbox  *struct {
		Pending int64 `json:"pending"`
		LastSeq int64 `json:"last_seq"`
	} `json:"outbox"`
	Replica *struct {
		State         string  `json:"state"`
		ReplicatedSeq int64   `json:"replicated_seq"`
		LastSeq       int64   `json:"last_seq"`
		LagSeconds    float64 `json:"lag_seconds"`
		LastError     string  `json:"last_error"`
	} `json:"replica"`
}

func statusOf(t *testing.T, privateURL string) edgeStatus {
	t.Helper()
	var st edgeStatus
	getJSON(t, privateURL+"/v1/sync/status", &st)
	return st
}

func summaryOf(t *testing.T, privateURL string) outbox.Summary {
	t.Helper()
	var s outbox.Summary
	getJSON(t, privateURL+"/admin/outbox/summary", &s)
	return s
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// waitSynced waits until the edge has nothing pending.
func waitSynced(t *testing.T, privateURL string) {
	t.Helper()
	testsync.Until(t, 60*time.Second, "sync of "+privateURL, func() bool { return statusOf(t, privateURL).Pending == 0 })
}

// waitReplicated waits until every committed row is in the replica.
func waitReplicated(t *testing.T, privateURL string) {
	t.Helper()
	testsync.Until(t, 60*time.Second, "replication of "+privateURL, func() bool {
		st := statusOf(t, privateURL)
		return st.Replica != nil && st.Replica.ReplicatedSeq == st.Replica.LastSeq && st.Replica.LastSeq > 0
	})
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// load posts leads and events to an edge and returns the ids of the leads
// acknowledged and the number of events.
func load(t *testing.T, base, tag string, leads, events int) (ids []string) {
	t.Helper()
	for i := range leads {
		ids = append(ids, postLead(t, base, fmt.Sprintf("%s-%d@example.com", tag, i)))
	}
	for range events {
		postEvent(t, base)
	}
	return ids
}

// TestFleetRecoverAndReconcile is the operator's worst day: three edges
// and one Postgres; one edge, unable to reach Postgres, is killed with
// SIGKILL while it holds unsynced rows, and its volume is deleted. recover
// brings its rows into Postgres from its replica, and reconcile proves that
// every acknowledged submission is in Postgres exactly once.
func TestFleetRecoverAndReconcile(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	replicaURL := "file://" + filepath.ToSlash(t.TempDir())
	type edge struct {
		id      string
		dir     string
		proc    *edgetest.Process
		leads   []string
		events  int
		dbURL   string
		private string
	}
	edges := []*edge{
		{id: "edge-a", dbURL: dbURL},
		{id: "edge-b", dbURL: dbURL},
		{id: "edge-c", dbURL: closedURL(t)}, // cannot sync: everything it takes stays pending
	}
	for _, e := range edges {
		e.dir = t.TempDir()
		e.proc = edgetest.Start(t, edgeEnv(e.id, e.dir, e.dbURL, replicaURL))
		e.private = e.proc.PrivateURL
	}
	var wg sync.WaitGroup
	for i, e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.leads = load(t, e.proc.URL, e.id, 40+10*i, 30)
			e.events = 30
		}()
	}
	wg.Wait()

	c := edges[2]
	st := statusOf(t, c.private)
	if st.Pending != int64(len(c.leads)+c.events) {
		t.Fatalf("edge-c pending %d, want every row it took (%d)", st.Pending, len(c.leads)+c.events)
	}
	// Rows committed after the replica's last round would be lost with the
	// volume: that window is the replication lag. Wait it out, then lose
	// the volume.
	waitReplicated(t, c.private)
	if err := c.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.proc.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.ledger WHERE node_id = 'edge-c'`); n != 0 {
		t.Fatalf("edge-c reached Postgres (%d rows) although it could not", n)
	}

	env := map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_REPLICA_URL": replicaURL}
	stdout, stderr, err := ctl(t, env, "recover", "--node", "edge-c", "--json")
	if err != nil {
		t.Fatalf("recover: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	rep := decodeJSON[recoverReport](t, stdout)
	wantC := int64(len(c.leads) + c.events)
	if rep.Restored != wantC || rep.Applied != wantC || rep.AlreadyInPostgres != 0 || rep.Quarantined != 0 || rep.Conflicts != 0 || rep.LeftPending != 0 {
		t.Fatalf("recover report = %+v; want %d restored and applied", rep, wantC)
	}
	if !strings.Contains(stderr, "restoring node edge-c") {
		t.Errorf("recover said nothing about restoring: %q", stderr)
	}

	for _, e := range edges[:2] {
		waitSynced(t, e.private)
	}
	stdout, stderr, err = ctl(t, env, "reconcile", "--json", "--edge", edges[0].private, "--edge", edges[1].private)
	if err != nil {
		t.Fatalf("reconcile: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	res := decodeJSON[reconcileResult](t, stdout)
	if !res.OK || res.Missing != 0 || res.Conflicts != 0 || len(res.Duplicates) != 0 || len(res.Nodes) != 3 {
		t.Fatalf("reconcile = %s", stdout)
	}
	for _, r := range res.Nodes {
		switch r.NodeID {
		case "edge-a", "edge-b":
			if !r.Checked || r.Missing != 0 || r.GapSeqs != 0 || r.PendingNew != 0 || r.InLedger != r.Edge.SyncedRetained {
				t.Errorf("reconcile of %s = %+v", r.NodeID, r)
			}
		case "edge-c":
			if r.Checked || r.EdgeURL != "" { // its edge is gone; Postgres knows it from recover
				t.Errorf("reconcile of the lost edge = %+v", r)
			}
		}
	}

	// Postgres holds exactly what was acknowledged, once.
	var leads, events int64
	for _, e := range edges {
		want := int64(len(e.leads) + e.events)
		if n := count(t, pool, `SELECT count(*) FROM mailslot.ledger WHERE node_id = $1`, e.id); n != want {
			t.Errorf("%s: %d ledger rows, want %d", e.id, n, want)
		}
		if n := count(t, pool, `SELECT count(*) FROM mailslot.consent_records WHERE submission_id = ANY($1::uuid[])`, e.leads); n != int64(len(e.leads)) {
			t.Errorf("%s: %d of its %d acknowledged sign-ups in Postgres", e.id, n, len(e.leads))
		}
		leads += int64(len(e.leads))
		events += int64(e.events)
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.leads`); n != leads {
		t.Errorf("%d leads in Postgres, want %d", n, leads)
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.events`); n != events {
		t.Errorf("%d events in Postgres, want %d", n, events)
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.consent_records`); n != leads {
		t.Errorf("%d consent records in Postgres, want %d", n, leads)
	}
}

// TestRestoreOnStart: a node whose data directory is wiped restores its
// outbox from its replica before it accepts, and its sequence continues
// past both the restored high-water mark and what Postgres already holds
// for it, so that (node_id, seq) stays unique and no new row is taken for a
// replay of an old one.
func TestRestoreOnStart(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	replicaURL := "file://" + filepath.ToSlash(t.TempDir())
	dir := t.TempDir()
	const id = "edge-r"
	wipe := func() {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	ledgerSeqs := func() (n, max int64) {
		t.Helper()
		err := pool.QueryRow(context.Background(), `SELECT count(*), COALESCE(max(seq), 0) FROM mailslot.ledger WHERE node_id = $1`, id).Scan(&n, &max)
		if err != nil {
			t.Fatal(err)
		}
		return n, max
	}

	// 1. The replica lags: with an hour between rounds it holds only the
	// empty outbox of the first round, while Postgres gets seqs 1-10.
	env := edgeEnv(id, dir, dbURL, replicaURL)
	env["MAILSLOT_REPLICA_SYNC_INTERVAL"] = "1h"
	p := edgetest.Start(t, env)
	testsync.Until(t, 30*time.Second, "the first replica round", func() bool {
		st := statusOf(t, p.PrivateURL)
		return st.Replica != nil && st.Replica.State == "replicating"
	})
	load(t, p.URL, "one", 4, 6)
	waitSynced(t, p.PrivateURL)
	if n, max := ledgerSeqs(); n != 10 || max != 10 {
		t.Fatalf("ledger holds %d rows up to seq %d, want 10 up to 10", n, max)
	}
	_ = p.Signal(syscall.SIGKILL)
	_, _ = p.Wait(10 * time.Second)
	wipe()

	// 2. Restart on the wiped directory: the replica is restored (empty),
	// and the sequence continues past Postgres' 10.
	p = edgetest.Start(t, edgeEnv(id, dir, dbURL, replicaURL))
	if logs := p.Logs(); !strings.Contains(logs, "restored it from the replica") {
		t.Errorf("the edge did not say it restored:\n%s", logs)
	}
	sum := summaryOf(t, p.PrivateURL)
	if sum.LastSeq != 10 || len(sum.Jumps) != 1 || sum.Jumps[0].To != 10 || !strings.Contains(sum.Jumps[0].Reason, "postgres") {
		t.Fatalf("after restore: %+v; want last seq 10 from Postgres' high-water mark", sum)
	}
	load(t, p.URL, "two", 2, 3)
	waitSynced(t, p.PrivateURL)
	if n, max := ledgerSeqs(); n != 15 || max != 15 {
		t.Fatalf("ledger holds %d rows up to seq %d, want 15 up to 15: new rows were taken for replays", n, max)
	}
	waitReplicated(t, p.PrivateURL)
	resp, err := httpClient.Get(p.PrivateURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"mailslot_replica_replicated_seq 15", "mailslot_replica_lag_seconds 0", "mailslot_replica_failing 0"} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// SIGTERM flushes the replica.
	load(t, p.URL, "three", 1, 1)
	_ = p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d, %v\n%s", code, err, p.Logs())
	}
	if logs := p.Logs(); !strings.Contains(logs, `"replica flushed"`) || !strings.Contains(logs, `"replicated_seq":17`) {
		t.Errorf("no flush up to seq 17 in the log:\n%s", logs)
	}
	wipe()

	// 3. Restart with Postgres unreachable: the outbox is restored (seqs
	// 11-17), and the sequence jumps to the clock-derived floor.
	before := edge.ClockFloor(time.Now())
	env = edgeEnv(id, dir, closedURL(t), replicaURL)
	p = edgetest.Start(t, env)
	sum = summaryOf(t, p.PrivateURL)
	// Rows 16-17 may have been restored pending: the stop can come before
	// their sync.
	if sum.SyncedRetained+sum.Pending != 7 || sum.MinSeq != 11 || sum.MaxSeq != 17 || sum.LastSeq < before || len(sum.Jumps) != 2 {
		t.Fatalf("after restore without Postgres: %+v; want seqs 11-17 held and a clock floor past %d", sum, before)
	}
	load(t, p.URL, "four", 2, 2)
	after := summaryOf(t, p.PrivateURL)
	if after.MaxSeq != sum.LastSeq+4 {
		t.Fatalf("new rows end at seq %d, want %d", after.MaxSeq, sum.LastSeq+4)
	}
	_ = p.Signal(syscall.SIGTERM)
	_, _ = p.Wait(30 * time.Second)

	// 4. Postgres back (same volume): the four rows sync; reconcile finds
	// nothing missing and no gap the recorded jumps do not explain.
	p = edgetest.Start(t, edgeEnv(id, dir, dbURL, replicaURL))
	waitSynced(t, p.PrivateURL)
	if n, max := ledgerSeqs(); n != 21 || max != after.MaxSeq {
		t.Fatalf("ledger holds %d rows up to %d, want 21 up to %d", n, max, after.MaxSeq)
	}
	stdout, stderr, err := ctl(t, map[string]string{"DATABASE_URL": dbURL}, "reconcile", "--json", "--edge", p.PrivateURL)
	if err != nil {
		t.Fatalf("reconcile: %v\n%s\n%s", err, stdout, stderr)
	}
	res := decodeJSON[reconcileResult](t, stdout)
	if len(res.Nodes) != 1 || res.Nodes[0].InLedger != 11 || res.Nodes[0].GapSeqs != 0 || res.Nodes[0].LedgerOnly != 0 {
		t.Fatalf("reconcile = %s", stdout)
	}
	if n := count(t, pool, `SELECT count(*) FROM mailslot.events WHERE origin_node = $1`, id); n != 12 {
		t.Errorf("%d events in Postgres, want 12", n)
	}
}

// TestRefuseStartWithoutReplica: with the outbox missing and the replica
// unreadable, the edge does not start on an empty outbox, which Litestream
// would then take for the node's latest state; it says what to do.
func TestRefuseStartWithoutReplica(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := edgeEnv("edge-x", t.TempDir(), "", "file://"+filepath.ToSlash(notADir))
	env["MAILSLOT_ADDR"], env["MAILSLOT_PRIVATE_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	n, err := edge.Open(context.Background(), edgetest.Config(t, env), slog.New(slog.DiscardHandler))
	if err == nil {
		_ = n.Close()
		t.Fatal("the edge started on an empty outbox with its replica unreadable")
	}
	for _, want := range []string{"the outbox is missing and its replica could not be restored", "mailslotctl recover --node edge-x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(env["MAILSLOT_DATA_DIR"], outbox.FileName)); err == nil {
		t.Errorf("an outbox was created")
	}
}
