package main_test

// These tests run the real mailslot binary (built once, see edgetest.Binary)
// on loopback ports with a temporary data directory, load it with
// concurrent sign-ups, stop it hard or softly, and read the SQLite outbox
// it leaves behind.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/testsync"
)

func TestMain(m *testing.M) {
	code := m.Run()
	edgetest.CleanupBinary()
	os.Exit(code)
}

// serveEnv is the environment of a test edge on dataDir: no rate limit,
// no Postgres (the edge only buffers), warnings and errors logged.
func serveEnv(dataDir string) map[string]string {
	env := edgetest.Env(dataDir)
	env["MAILSLOT_RATE_RPS"] = "0"
	env["MAILSLOT_LOG_LEVEL"] = "warn"
	env["MAILSLOT_SHUTDOWN_TIMEOUT"] = "10s"
	return env
}

// load posts unique sign-ups from concurrent workers until stopped, and
// records what the edge acknowledged.
type load struct {
	mu       sync.Mutex
	acked    map[string]string // id → email of every 202
	bad      []string          // any answer other than a 202
	connErrs atomic.Int64
	n        atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(baseURL, prefix string, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{acked: map[string]string{}, cancel: cancel}
	client := &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true},
	}
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				email := fmt.Sprintf("%s-%d-%d@example.com", prefix, w, i)
				l.post(ctx, client, baseURL, email)
			}
		})
	}
	return l
}

func (l *load) post(ctx context.Context, client *http.Client, baseURL, email string) {
	body := fmt.Sprintf(`{"email":%q,"property":"crash-test"}`, email)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/leads", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			l.connErrs.Add(1)
			time.Sleep(5 * time.Millisecond) // the edge is gone: do not spin
		}
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		// The edge died while sending the answer: not acknowledged.
		l.connErrs.Add(1)
		return
	}
	var ans struct{ ID, Status string }
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &ans) != nil || ans.ID == "" {
		l.mu.Lock()
		l.bad = append(l.bad, fmt.Sprintf("%d %s", resp.StatusCode, b))
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	l.acked[ans.ID] = email
	l.mu.Unlock()
	l.n.Add(1)
}

// waitFor lets the load run for at least d and until at least n sign-ups
// were acknowledged.
func (l *load) waitFor(t *testing.T, d time.Duration, n int64) {
	t.Helper()
	start := time.Now()
	testsync.UntilState(t, 90*time.Second, fmt.Sprintf("%s of load and %d sign-ups", d, n), func() (bool, string) {
		return time.Since(start) >= d && l.n.Load() >= n, fmt.Sprintf("%d sign-ups acknowledged", l.n.Load())
	})
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// row is one outbox row as the tests check it.
type row struct {
	seq         int64
	node, email string
}

// readOutbox reads every row, keyed by id, after checking the file's
// integrity and that seq and id are unique.
func readOutbox(t *testing.T, dataDir string) map[string]row {
	t.Helper()
	db := edgetest.OpenDB(t, dataDir)
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	var total, seqs, ids int
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT seq), count(DISTINCT id) FROM outbox`).Scan(&total, &seqs, &ids); err != nil {
		t.Fatal(err)
	}
	if seqs != total || ids != total {
		t.Fatalf("%d rows but %d distinct seqs and %d distinct ids", total, seqs, ids)
	}
	rows, err := db.Query(`SELECT seq, id, node_id, COALESCE(json_extract(payload, '$.email'), '') FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := make(map[string]row, total)
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&r.seq, &id, &r.node, &r.email); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAcked proves that every acknowledged sign-up is stored, once, as
// acknowledged.
func checkAcked(t *testing.T, stored map[string]row, acked map[string]string) {
	t.Helper()
	missing := 0
	for id, email := range acked {
		r, ok := stored[id]
		switch {
		case !ok:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged sign-up %s (%s) is not in the outbox", id, email)
			}
		case r.email != email || r.node != edgetest.NodeID:
			t.Errorf("row %s holds %s from node %s, acknowledged %s", id, r.email, r.node, email)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged sign-ups lost", missing, len(acked))
	}
}

func maxSeq(stored map[string]row) int64 {
	var m int64
	for _, r := range stored {
		m = max(m, r.seq)
	}
	return m
}

// TestKillMidLoad kills the edge with SIGKILL while 16 clients sign up,
// twice, restarting it on the same data directory each time: every sign-up
// that got a 202 is in the outbox, sequence numbers are unique, and each
// run's numbers continue past the last one's.
func TestKillMidLoad(t *testing.T) {
	dataDir := t.TempDir()
	env := serveEnv(dataDir)
	acked := map[string]string{}
	var lastMax int64
	for round := range 2 {
		p := edgetest.Start(t, env)
		l := startLoad(p.URL, fmt.Sprintf("kill%d", round), 16)
		l.waitFor(t, 1500*time.Millisecond, 300)
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		l.stop()
		if len(l.bad) > 0 {
			t.Errorf("round %d: %d answers other than 202, first: %s", round, len(l.bad), l.bad[0])
		}
		t.Logf("round %d: %d acknowledged, %d connection errors", round, len(l.acked), l.connErrs.Load())
		for id, email := range l.acked {
			acked[id] = email
		}

		// The restarted edge opens the file the killed one left, and
		// everything acknowledged before the kill is in it.
		p = edgetest.Start(t, env)
		stored := readOutbox(t, dataDir)
		checkAcked(t, stored, acked)
		if len(stored) < len(acked) {
			t.Errorf("%d rows for %d acknowledged sign-ups", len(stored), len(acked))
		}
		roundMin := int64(-1)
		for id := range l.acked {
			if s := stored[id].seq; roundMin < 0 || s < roundMin {
				roundMin = s
			}
		}
		if roundMin <= lastMax {
			t.Errorf("round %d reused seq %d (previous run ended at %d)", round, roundMin, lastMax)
		}
		lastMax = maxSeq(stored)

		// A new sign-up after the restart continues the sequence.
		resp, err := http.Post(p.URL+"/v1/leads", "application/json", strings.NewReader(fmt.Sprintf(`{"email":"after%d@example.com","property":"p"}`, round)))
		if err != nil {
			t.Fatal(err)
		}
		var ans struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("sign-up after restart: %d %v", resp.StatusCode, err)
		}
		var seq int64
		if err := edgetest.OpenDB(t, dataDir).QueryRow(`SELECT seq FROM outbox WHERE id = ?`, ans.ID).Scan(&seq); err != nil {
			t.Fatalf("the sign-up after restart: %v", err)
		}
		if seq <= lastMax {
			t.Errorf("seq after restart = %d, want > %d", seq, lastMax)
		}
		lastMax = seq
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGracefulStopMidLoad sends SIGTERM while 16 clients sign up: the edge
// exits 0 within its shutdown timeout, every 202 is stored, and no request
// got anything but a 202 or a connection error.
func TestGracefulStopMidLoad(t *testing.T) {
	dataDir := t.TempDir()
	p := edgetest.Start(t, serveEnv(dataDir))
	l := startLoad(p.URL, "term", 16)
	l.waitFor(t, time.Second, 200)

	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10*time.Second + 5*time.Second)
	took := time.Since(start)
	l.stop()
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, p.Logs())
	}
	t.Logf("stopped in %v; %d acknowledged, %d connection errors", took.Round(time.Millisecond), len(l.acked), l.connErrs.Load())
	if len(l.bad) > 0 {
		t.Errorf("%d answers other than 202 during the stop, first: %s", len(l.bad), l.bad[0])
	}

	stored := readOutbox(t, dataDir)
	checkAcked(t, stored, l.acked)
	// A clean stop leaves nothing behind that was not acknowledged, except
	// answers the client could not read any more.
	if extra := len(stored) - len(l.acked); extra < 0 || int64(extra) > l.connErrs.Load() {
		t.Errorf("%d rows for %d acknowledged sign-ups and %d connection errors", len(stored), len(l.acked), l.connErrs.Load())
	}
	logs := p.Logs()
	if strings.Contains(logs, "@example.com") {
		t.Errorf("the edge logged an email address:\n%s", logs)
	}
}
