package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/loadgen"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

// The sync scenarios measure the drain worker against the local Postgres 18
// that `make bench` starts:
//
//   - drain: an outbox pre-filled with MAILSLOT_BENCH_DRAIN_ROWS sign-ups
//     (default one million: each a lead upsert, a consent record and its
//     ledger entry in Postgres) is synced by a real `mailslot serve`; the
//     time runs from the edge being ready to its pending count reaching
//     zero, and the row counts in Postgres are checked afterwards. With
//     MAILSLOT_BENCH_DRAIN_EVENTS=k each sign-up is followed by k page
//     views (telemetry, into the partitioned mailslot.events). With
//     MAILSLOT_BENCH_DRAIN_WEBHOOK=on a webhook subscription to every
//     event is active (a loopback receiver answering 204), so each
//     sign-up also writes its lead.created and the edge delivers them
//     while it drains.
//   - lag: sign-ups at a steady MAILSLOT_BENCH_LAG_RATE per second (default
//     5,000) for the scenario's duration; a sample of them is watched in
//     Postgres' ledger (polled every 10 ms), and the lag is the time from
//     the edge's 202 to the row being visible in Postgres.

func init() {
	scenarios = append(scenarios,
		scenario{Name: "drain", Default: true, Run: drainRate,
			About: "sync drain rate of a pre-filled outbox into Postgres 18 (needs MAILSLOT_TEST_DATABASE_URL)"},
		scenario{Name: "lag", Default: true, Run: syncLag,
			About: "end-to-end lag, accept to visible in Postgres, at a steady rate (needs MAILSLOT_TEST_DATABASE_URL)"},
	)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

const benchNode = "bench-sync"

// prefill writes n sign-ups into a new outbox in dir, in one SQLite
// transaction, with the payloads and hashes the edge itself would store.
func prefill(ctx context.Context, dir string, n, eventsEach int) error {
	out, err := outbox.Open(ctx, outbox.Options{Dir: dir, NodeID: benchNode})
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, outbox.FileName)+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO outbox (id, node_id, kind, received_at, payload, email_hmac, ip_hmac) VALUES (?, ?, 'lead', ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	evStmt, err := tx.PrepareContext(ctx, `INSERT INTO outbox (id, node_id, kind, received_at, payload, ip_hmac) VALUES (?, ?, 'event', ?, ?, ?)`)
	if err != nil {
		return err
	}
	ev, _ := json.Marshal(mailslot.Event{Type: mailslot.EventPageView, Property: "bench", Page: "https://example.com/pricing",
		UTM: mailslot.UTM{Source: "newsletter", Medium: "email", Campaign: "launch"}})
	h := pii.NewHasher([]byte(benchSecrets[0]))
	ip := h.IP("192.0.2.10")
	now := time.Now().UTC()
	for i := range n {
		email := fmt.Sprintf("drain+%d@example.com", i)
		p, _ := json.Marshal(mailslot.LeadPayload{
			Lead: mailslot.Lead{Email: email, Property: "bench", Consent: mailslot.ConsentExpress, PolicyVersion: "2026-01",
				Source: "footer", Name: "Bench User", Page: "https://example.com/pricing",
				UTM: mailslot.UTM{Source: "newsletter", Medium: "email", Campaign: "launch"}},
			ConsentRecord: mailslot.ConsentRecord{Property: "bench", PolicyVersion: "2026-01", Status: mailslot.ConsentExpress,
				Source: "footer", RecordedAt: now},
		})
		if _, err := stmt.ExecContext(ctx, uuid.Must(uuid.NewV7()).String(), benchNode, now.UnixMilli(), string(p), h.Email(email), ip); err != nil {
			return fmt.Errorf("prefill row %d: %w", i, err)
		}
		for range eventsEach {
			if _, err := evStmt.ExecContext(ctx, uuid.Must(uuid.NewV7()).String(), benchNode, now.UnixMilli(), string(ev), ip); err != nil {
				return fmt.Errorf("prefill an event of row %d: %w", i, err)
			}
		}
	}
	return tx.Commit()
}

// syncStatus is the part of /v1/sync/status the sync scenarios read.
type syncStatus struct {
	Pending    int64  `json:"pending"`
	RowsSynced int64  `json:"rows_synced"`
	LastError  string `json:"last_error"`
}

func readSyncStatus(ctx context.Context, client *http.Client, private string) (syncStatus, error) {
	var st syncStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, private+"/v1/sync/status", nil)
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func drainRate(ctx context.Context, e *env) (*measurement, error) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		return &measurement{Server: "skipped: MAILSLOT_TEST_DATABASE_URL is not set (make bench sets it)"}, nil
	}
	rows := envInt("MAILSLOT_BENCH_DRAIN_ROWS", 1_000_000)
	eventsEach := envInt("MAILSLOT_BENCH_DRAIN_EVENTS", 0)
	total := rows * (1 + eventsEach)
	dbURL, drop, err := freshDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer drop()
	dir, err := os.MkdirTemp(e.dataRoot, "mailslotbench-drain-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(e.progress, "drain: writing %d sign-ups and %d events into an outbox...\n", rows, rows*eventsEach)
	if err := prefill(ctx, dir, rows, eventsEach); err != nil {
		return nil, fmt.Errorf("prefill outbox: %w", err)
	}
	env := append([]string{"DATABASE_URL=" + dbURL, "MAILSLOT_NODE_ID=" + benchNode, "MAILSLOT_DATA_DIR=" + dir}, benchSecrets...)
	hooked := os.Getenv("MAILSLOT_BENCH_DRAIN_WEBHOOK") == "on"
	if hooked {
		stopReceiver, err := subscribeDrain(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		defer stopReceiver()
		env = append(env, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE=true")
	}
	start := time.Now()
	srv, err := startServer(ctx, e.bin, e.dataRoot, serverOpts{Env: env}, e.serverEnv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	client := &http.Client{Timeout: 5 * time.Second}
	var peak int64
	for {
		if rss, _, err := procMemory(srv.pid()); err == nil && rss > peak {
			peak = rss
		}
		st, err := readSyncStatus(ctx, client, srv.Private)
		if err == nil && st.Pending == 0 && st.RowsSynced >= int64(total) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return nil, fmt.Errorf("drain: still %d pending after 30 minutes (last error %q)", st.Pending, st.LastError)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	edgeCPU, err := cpuTime(srv.pid())
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	pgCPU, err := backendsCPU(ctx, conn)
	if err != nil {
		return nil, err
	}
	var ledger, leads, consent, events int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.ledger), (SELECT count(*) FROM mailslot.leads),
		(SELECT count(*) FROM mailslot.consent_records), (SELECT count(*) FROM mailslot.events)`).Scan(&ledger, &leads, &consent, &events); err != nil {
		return nil, err
	}
	if ledger != int64(total) || leads != int64(rows) || consent != int64(rows) || events != int64(rows*eventsEach) {
		return nil, fmt.Errorf("drain: Postgres holds %d ledger rows, %d leads, %d consent records, %d events; want %d, %d, %d, %d",
			ledger, leads, consent, events, total, rows, rows, rows*eventsEach)
	}
	server := fmt.Sprintf("%d sign-ups, MAILSLOT_SYNC_BATCH default", rows)
	if eventsEach > 0 {
		server = fmt.Sprintf("%d sign-ups and %d page views, MAILSLOT_SYNC_BATCH default", rows, rows*eventsEach)
	}
	if hooked {
		var events int64
		// Those the deliverer has not expanded yet are still in their
		// batch's record.
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.webhook_events WHERE type = 'lead.created')
			+ (SELECT coalesce(sum(cardinality(lead_ids)), 0) FROM mailslot.webhook_created)`).Scan(&events); err != nil {
			return nil, err
		}
		if events != int64(rows) {
			return nil, fmt.Errorf("drain: %d lead.created events for %d sign-ups", events, rows)
		}
		server += ", a webhook subscription to every event (a loopback receiver answering 204)"
	}
	return &measurement{
		Server:  server,
		PeakRSS: peak,
		Extra: []metric{
			{Name: "drained/s", Value: float64(total) / elapsed.Seconds(), Unit: "rows/s"},
			{Name: "drain time", Value: elapsed.Seconds(), Unit: "s"},
			// CPU per row is steadier than rows/s on a shared machine: it
			// says what a row costs, whatever else ran beside the drain.
			{Name: "edge CPU/row", Value: float64(edgeCPU.Microseconds()) / float64(total), Unit: "µs"},
			{Name: "Postgres CPU/row", Value: float64(pgCPU.Microseconds()) / float64(total), Unit: "µs"},
		},
	}, nil
}

// backendsCPU is the CPU time used so far by the Postgres backends
// connected to conn's database other than conn's own: the drain worker's
// connections, which have done nothing but the drain. Postgres runs on
// this machine, so their pids are local.
func backendsCPU(ctx context.Context, conn *pgx.Conn) (time.Duration, error) {
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		t, err := cpuTime(int(pid))
		if err != nil {
			return 0, fmt.Errorf("CPU time of Postgres backend %d: %w", pid, err)
		}
		total += t
	}
	return total, nil
}

// procMemory reads VmRSS and VmHWM of pid in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range splitLines(string(b)) {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			rss = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func syncLag(ctx context.Context, e *env) (*measurement, error) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		return &measurement{Server: "skipped: MAILSLOT_TEST_DATABASE_URL is not set (make bench sets it)"}, nil
	}
	rate := envInt("MAILSLOT_BENCH_LAG_RATE", 5000)
	dbURL, drop, err := freshDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer drop()
	env := append([]string{"DATABASE_URL=" + dbURL, "MAILSLOT_NODE_ID=" + benchNode}, benchSecrets...)
	srv, err := startServer(ctx, e.bin, e.dataRoot, serverOpts{Env: env}, e.serverEnv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)

	const workers = 256
	client := loadgen.NewClient(workers, 10*time.Second)
	// Every sampleEvery-th accepted sign-up is watched in Postgres.
	const sampleEvery = 25
	var (
		mu      sync.Mutex
		acked   = map[string]time.Time{} // submission id -> 202 time
		lags    []time.Duration
		sent    int64
		refused int64
	)
	jobs := make(chan int, 1024)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body := fmt.Sprintf(`{"email":"lag+%d@example.com","property":"bench","consent":"express","utm":{"source":"newsletter"}}`, i)
				code, resp, err := postJSON(ctx, client, srv.URL+"/v1/leads", body)
				if err != nil || code != http.StatusAccepted {
					mu.Lock()
					refused++
					mu.Unlock()
					continue
				}
				if i%sampleEvery != 0 {
					continue
				}
				var r struct{ ID string }
				if json.Unmarshal(resp, &r) == nil {
					mu.Lock()
					acked[r.ID] = time.Now()
					mu.Unlock()
				}
			}
		}()
	}
	// The watcher marks each sampled id when it appears in the ledger.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-watchCtx.Done():
				watchDone <- nil
				return
			case <-t.C:
			}
			mu.Lock()
			ids := make([]string, 0, len(acked))
			for id := range acked {
				ids = append(ids, id)
			}
			mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			rows, err := conn.Query(watchCtx, `SELECT submission_id::text FROM mailslot.ledger WHERE submission_id = ANY($1::uuid[])`, ids)
			if err != nil {
				if watchCtx.Err() != nil {
					watchDone <- nil
					return
				}
				watchDone <- err
				return
			}
			seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				watchDone <- err
				return
			}
			now := time.Now()
			mu.Lock()
			for _, id := range seen {
				if t0, ok := acked[id]; ok {
					lags = append(lags, now.Sub(t0))
					delete(acked, id)
				}
			}
			mu.Unlock()
		}
	}()

	// Pace the sign-ups from the clock, not from ticks (a loaded machine
	// drops ticks): by now, rate × elapsed should have been offered.
	start := time.Now()
	var behind int64
	for el := time.Since(start); el < e.duration; el = time.Since(start) {
		for due := int64(el.Seconds()*float64(rate)) - sent - behind; due > 0; due-- {
			select {
			case jobs <- int(sent):
				sent++
			default: // every worker is busy: the edge is not keeping up
				behind++
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
	achieved := float64(sent) / time.Since(start).Seconds()
	// Let the last samples arrive.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		left := len(acked)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	if err := <-watchDone; err != nil {
		return nil, fmt.Errorf("watch ledger: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) > 0 {
		return nil, fmt.Errorf("lag: %d sampled sign-ups never reached Postgres", len(acked))
	}
	if len(lags) == 0 {
		return nil, errors.New("lag: no sample was measured")
	}
	slices.Sort(lags)
	q := func(p float64) float64 { return lags[min(len(lags)-1, int(p*float64(len(lags))))].Seconds() * 1000 }
	return &measurement{
		Server: fmt.Sprintf("%d sign-ups/s offered, %.0f/s sent, %d not sent (all workers busy), %d refused", rate, achieved, behind, refused),
		Extra: []metric{
			{Name: "lag p50", Value: q(0.50), Unit: "ms"},
			{Name: "lag p99", Value: q(0.99), Unit: "ms"},
			{Name: "lag max", Value: lags[len(lags)-1].Seconds() * 1000, Unit: "ms"},
			{Name: "sent/s", Value: achieved, Unit: "req/s"},
		},
	}, nil
}

// subscribeDrain subscribes a loopback receiver that answers 204 to every
// event (MAILSLOT_BENCH_DRAIN_WEBHOOK=on), so that the drain writes a
// lead.created per sign-up and the edge delivers them while it drains. It
// returns what stops the receiver.
func subscribeDrain(ctx context.Context, dbURL string) (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := webhook.Add(ctx, conn, webhook.NewSubscription{URL: "http://" + ln.Addr().String() + "/hooks",
		Events: webhook.Types, Policy: safedial.Policy{AllowPrivate: true}}); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("subscribe the drain's receiver: %w", err)
	}
	return func() { _ = srv.Close() }, nil
}
