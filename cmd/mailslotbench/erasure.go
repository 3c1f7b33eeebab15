package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/pgschema"
)

// The erasure propagation scenario: two real edges, A and B, sync into a
// fresh Postgres database. Each holds sign-ups of the same addresses. The
// addresses are erased one at a time through edge B's admin API, and for
// each the benchmark measures how long until edge A's outbox no longer
// holds the address: the time from B's 202 to the first poll of A's
// /admin/export that returns no row of it (polled every 5 ms). That span is
// B's local commit, B's sync of the erasure request (MAILSLOT_SYNC_INTERVAL,
// 200 ms), its transaction in Postgres, and A's next tombstone pull
// (MAILSLOT_TOMBSTONE_INTERVAL, 500 ms) and scrub, all at their production
// defaults. The target: p99 <= 2s.

// erasureCount is how many addresses each round erases.
const erasureCount = 50

// The hook: the scenario registers itself, so main.go needs no change.
func init() {
	scenarios = append(scenarios, scenario{
		Name:    "erasure",
		About:   "erasure propagation: erase at edge B, time until edge A's outbox no longer holds the address (needs MAILSLOT_TEST_DATABASE_URL)",
		Default: true,
		Run:     erasurePropagation,
	})
}

// benchSecrets are shared by both edges: the same pepper makes the same
// email hash at both.
var benchSecrets = []string{
	"MAILSLOT_IP_PEPPER=bench-pepper-0123456789abcdef-0123456789",
	"MAILSLOT_TOKEN_KEY=bench-token-key-0123456789abcdef-01234567",
	"MAILSLOT_ADMIN_TOKEN=bench-admin-token-0123456789abcdef-012345",
}

func erasurePropagation(ctx context.Context, e *env) (*measurement, error) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		return &measurement{Server: "skipped: MAILSLOT_TEST_DATABASE_URL is not set (make bench sets it)"}, nil
	}
	dbURL, drop, err := freshDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer drop()

	start := func(id string) (*server, error) {
		env := append([]string{"DATABASE_URL=" + dbURL, "MAILSLOT_NODE_ID=" + id, "MAILSLOT_REGION=bench"}, benchSecrets...)
		return startServer(ctx, e.bin, e.dataRoot, serverOpts{}, append(env, e.serverEnv...))
	}
	a, err := start("bench-a")
	if err != nil {
		return nil, fmt.Errorf("start edge A: %w", err)
	}
	defer a.stop()
	b, err := start("bench-b")
	if err != nil {
		return nil, fmt.Errorf("start edge B: %w", err)
	}
	defer b.stop()

	client := &http.Client{Timeout: 10 * time.Second}
	run := randomHex(4)
	addr := func(i int) string { return fmt.Sprintf("erase-%s-%d@bench.example", run, i) }
	for i := range erasureCount {
		for _, s := range []*server{a, b} {
			body := fmt.Sprintf(`{"email":%q,"property":"bench","consent":"express","name":"Bench %d"}`, addr(i), i)
			if code, ans, err := postJSON(ctx, client, s.URL+"/v1/leads", body); err != nil || code != http.StatusAccepted {
				return nil, fmt.Errorf("seed sign-up: status %d %s: %v", code, ans, err)
			}
		}
	}
	for _, s := range []*server{a, b} {
		if err := waitSynced(ctx, client, s, time.Minute); err != nil {
			return nil, err
		}
	}
	if n, err := heldRows(ctx, client, a, addr(0)); err != nil || n == 0 {
		return nil, fmt.Errorf("edge A does not hold the seeded address (%d rows): %v", n, err)
	}

	lat := make([]time.Duration, 0, erasureCount)
	for i := range erasureCount {
		email := addr(i)
		// Start each erasure at a random point of edge A's pull cycle:
		// erasing right after the previous one was seen would always start
		// just after A's pull and measure nearly a whole interval.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rand.N(500 * time.Millisecond)):
		}
		t0 := time.Now()
		code, ans, err := postJSON(ctx, client, b.Private+"/admin/erasures", fmt.Sprintf(`{"email":%q}`, email))
		if err != nil || code != http.StatusAccepted {
			return nil, fmt.Errorf("erase at edge B: status %d %s: %v", code, ans, err)
		}
		for {
			n, err := heldRows(ctx, client, a, email)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				break
			}
			if time.Since(t0) > 30*time.Second {
				return nil, fmt.Errorf("edge A still holds erased address %d after 30s", i)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &measurement{
		Server: fmt.Sprintf("%d erasures; two edges, sync and tombstone intervals at their defaults unless -env sets them", erasureCount),
		Extra: []metric{
			{Name: "erasure p50", Value: ms(rank(lat, 0.50)), Unit: "ms"},
			{Name: "erasure p99", Value: ms(rank(lat, 0.99)), Unit: "ms"},
			{Name: "erasure max", Value: ms(lat[len(lat)-1]), Unit: "ms"},
		},
	}, nil
}

// rank is the nearest-rank quantile q of sorted durations.
func rank(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// freshDatabase creates and migrates a database on the server admin
// points at, and returns its URL and a function that drops it.
func freshDatabase(ctx context.Context, admin string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to MAILSLOT_TEST_DATABASE_URL: %w", err)
	}
	name := "mailslotbench_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = conn.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(dctx)
	}
	u, err := url.Parse(admin)
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	mc, err := pgx.Connect(ctx, u.String())
	if err == nil {
		_, err = pgschema.Migrate(ctx, mc)
		mc.Close(ctx)
	}
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("migrate benchmark database: %w", err)
	}
	return u.String(), drop, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

func postJSON(ctx context.Context, client *http.Client, url, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// heldRows is how many rows edge s's outbox still holds of email that are
// not erasure requests (/admin/export lists the rows that carry the
// address's hash; a scrubbed row has lost it).
func heldRows(ctx context.Context, client *http.Client, s *server, email string) (int, error) {
	code, body, err := postJSON(ctx, client, s.Private+"/admin/export", fmt.Sprintf(`{"email":%q}`, email))
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("export at edge A: status %d %s: %v", code, body, err)
	}
	var ans struct {
		Rows []struct {
			Kind    string          `json:"kind"`
			Payload json.RawMessage `json:"payload"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return 0, fmt.Errorf("export at edge A: %w", err)
	}
	n := 0
	for _, r := range ans.Rows {
		if r.Kind != "erasure" && string(r.Payload) != `{"erased":true}` {
			n++
		}
	}
	return n, nil
}

// waitSynced waits until edge s has nothing pending.
func waitSynced(ctx context.Context, client *http.Client, s *server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Private+"/v1/sync/status", nil)
		resp, err := client.Do(req)
		if err == nil {
			var st struct {
				Pending    int64 `json:"pending"`
				RowsSynced int64 `json:"rows_synced"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Pending == 0 && st.RowsSynced > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("edge did not sync its seed rows within " + limit.String() + "\n" + s.logTail(20))
}
