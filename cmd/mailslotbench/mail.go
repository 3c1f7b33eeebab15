package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The mail scenarios measure the dispatcher of one `mailslot serve`
// sending over SMTP into a Mailpit (the one pinned as a Go tool, started
// here with no message limit), with the jobs in the local Postgres 18:
//
//   - mail-throughput: MAILSLOT_BENCH_MAIL_JOBS (default 3,000) leads and
//     their due confirmation jobs are written into Postgres before the
//     edge starts; the rate is the number of messages over the span
//     between the first and the last message Mailpit received (its own
//     receive times), and every job must end sent.
//   - mail-latency: sign-ups at MAILSLOT_BENCH_MAIL_RATE per second
//     (default 50) for the scenario's duration, each asking for mail
//     (pending, double opt-in by default); the latency of each is from
//     the edge's 202 to Mailpit's receive time of its confirmation.
//     MAILSLOT_MAIL_INTERVAL and MAILSLOT_SYNC_INTERVAL keep their
//     defaults unless -env sets them.

var (
	mailThroughputScenario = scenario{Name: "mail-throughput", Default: true, Run: mailThroughput,
		About: "confirmations from one edge into Mailpit over SMTP, jobs pre-filled in Postgres 18 (needs MAILSLOT_TEST_DATABASE_URL)"}
	mailLatencyScenario = scenario{Name: "mail-latency", Default: true, Run: mailLatency,
		About: "sign-up accepted to its confirmation in Mailpit, at a steady rate (needs MAILSLOT_TEST_DATABASE_URL)"}
)

// mailEnv is the edge's mail configuration for a Mailpit at smtpAddr.
func mailEnv(smtpAddr string) []string {
	return []string{
		"MAILSLOT_SMTP_URL=smtp://" + smtpAddr + "?starttls=off",
		"MAILSLOT_MAIL_FROM=Bench <news@bench.example>",
		"MAILSLOT_SENDER_NAME=Bench Publishing Inc.",
		"MAILSLOT_SENDER_ADDRESS=1 Bench Street, Toronto ON M5V 1A1",
		"MAILSLOT_SENDER_CONTACT=privacy@bench.example",
	}
}

// mailpit is a Mailpit process for one round.
type mailpit struct {
	cmd      *exec.Cmd
	SMTPAddr string
	API      string
	dir      string
	exited   chan struct{}
}

// startMailpit runs the Mailpit that go.mod pins as a tool on free
// loopback ports, keeping every message (--max 0), and waits for it.
func startMailpit(ctx context.Context, root string) (*mailpit, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "-n", "mailpit").Output()
	if err != nil {
		return nil, fmt.Errorf("build mailpit (go tool -n mailpit, from the repository): %w", err)
	}
	smtpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(root, "mailslotbench-mailpit-")
	if err != nil {
		return nil, err
	}
	m := &mailpit{SMTPAddr: smtpAddr, API: "http://" + httpAddr, dir: dir, exited: make(chan struct{})}
	m.cmd = exec.Command(strings.TrimSpace(string(out)),
		"--smtp", smtpAddr, "--listen", httpAddr, "--database", filepath.Join(dir, "mailpit.db"),
		"--max", "0", "--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--smtp-disable-rdns",
		"--disable-version-check", "--quiet")
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start mailpit: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get(m.API + "/readyz"); err == nil {
			resp.Body.Close()
			if c, err := net.DialTimeout("tcp", smtpAddr, time.Second); err == nil && resp.StatusCode == http.StatusOK {
				c.Close()
				return m, nil
			}
		}
		select {
		case <-m.exited:
			os.RemoveAll(dir)
			return nil, errors.New("mailpit exited before it was ready")
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, errors.New("mailpit not ready after 30s")
		}
	}
}

func (m *mailpit) stop() {
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	os.RemoveAll(m.dir)
}

// received is one message as Mailpit's list shows it.
type received struct {
	To      []struct{ Address string }
	Created time.Time
}

// total is how many messages Mailpit holds.
func (m *mailpit) total(ctx context.Context, client *http.Client) (int, error) {
	var list struct {
		Total int `json:"total"`
	}
	err := m.get(ctx, client, "/api/v1/messages?limit=1", &list)
	return list.Total, err
}

// messages lists every stored message (newest first), a page at a time.
func (m *mailpit) messages(ctx context.Context, client *http.Client) ([]received, error) {
	var all []received
	for start := 0; ; start += 1000 {
		var page struct {
			Total    int        `json:"total"`
			Messages []received `json:"messages"`
		}
		if err := m.get(ctx, client, fmt.Sprintf("/api/v1/messages?limit=1000&start=%d", start), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) == 0 || len(all) >= page.Total {
			return all, nil
		}
	}
}

func (m *mailpit) get(ctx context.Context, client *http.Client, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.API+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// prefillMailJobs writes n pending leads of property bench and one due
// confirmation job each, as the sync would have queued them.
func prefillMailJobs(ctx context.Context, dbURL string, n int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	emails, hashes := make([]string, n), make([][]byte, n)
	for i := range n {
		emails[i] = fmt.Sprintf("mail+%d@example.com", i)
		h := sha256.Sum256([]byte(emails[i]))
		hashes[i] = h[:]
	}
	_, err = conn.Exec(ctx, `
		WITH l AS (
		    INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		    SELECT 'bench', e, h, 'pending', now(), now() FROM unnest($1::text[], $2::bytea[]) AS u(e, h)
		    RETURNING id)
		INSERT INTO mailslot.mail_jobs (lead_id, property, kind) SELECT id, 'bench', 'confirmation' FROM l`, emails, hashes)
	if err != nil {
		return fmt.Errorf("prefill mail jobs: %w", err)
	}
	return nil
}

func mailThroughput(ctx context.Context, e *env) (*measurement, error) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		return &measurement{Server: "skipped: MAILSLOT_TEST_DATABASE_URL is not set (make bench sets it)"}, nil
	}
	jobs := envInt("MAILSLOT_BENCH_MAIL_JOBS", 3000)
	dbURL, drop, err := freshDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer drop()
	mp, err := startMailpit(ctx, e.dataRoot)
	if err != nil {
		return nil, err
	}
	defer mp.stop()
	fmt.Fprintf(e.progress, "mail-throughput: queueing %d confirmations in Postgres...\n", jobs)
	if err := prefillMailJobs(ctx, dbURL, jobs); err != nil {
		return nil, err
	}
	env := append(append([]string{"DATABASE_URL=" + dbURL, "MAILSLOT_NODE_ID=" + benchNode}, benchSecrets...), mailEnv(mp.SMTPAddr)...)
	start := time.Now()
	srv, err := startServer(ctx, e.bin, e.dataRoot, serverOpts{Env: env}, e.serverEnv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	rss := sampleRSS(srv.pid(), 100*time.Millisecond)
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		n, err := mp.total(ctx, client)
		if err != nil {
			return nil, err
		}
		if n >= jobs {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return nil, fmt.Errorf("mail-throughput: Mailpit holds %d of %d messages after 10 minutes\n%s", n, jobs, srv.logTail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	wall := time.Since(start)
	peak := rss.Stop()
	edgeCPU, err := cpuTime(srv.pid())
	if err != nil {
		return nil, err
	}
	// Mailpit's CPU says how much of the machine the receiving side took.
	mailpitCPU, err := cpuTime(mp.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	list, err := mp.messages(ctx, client)
	if err != nil {
		return nil, err
	}
	first, last := list[0].Created, list[0].Created
	for _, m := range list {
		first, last = minTime(first, m.Created), maxTime(last, m.Created)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var sent, other int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state <> 'sent')
		FROM mailslot.mail_jobs`).Scan(&sent, &other); err != nil {
		return nil, err
	}
	if len(list) != jobs || sent != int64(jobs) || other != 0 {
		return nil, fmt.Errorf("mail-throughput: Mailpit holds %d messages, Postgres %d jobs sent and %d not; want %d", len(list), sent, other, jobs)
	}
	span := last.Sub(first)
	if span <= 0 {
		return nil, fmt.Errorf("mail-throughput: %d messages received within one clock tick", jobs)
	}
	return &measurement{
		Server:  fmt.Sprintf("%d confirmations, one SMTP connection, batches of 32 claimed", jobs),
		LoadRSS: peak,
		Extra: []metric{
			{Name: "mail/s", Value: float64(jobs-1) / span.Seconds(), Unit: "msg/s"},
			{Name: "send time", Value: span.Seconds(), Unit: "s"},
			{Name: "start to last", Value: wall.Seconds(), Unit: "s"},
			{Name: "edge CPU/msg", Value: float64(edgeCPU.Microseconds()) / float64(jobs), Unit: "µs"},
			{Name: "Mailpit CPU/msg", Value: float64(mailpitCPU.Microseconds()) / float64(jobs), Unit: "µs"},
		},
	}, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func mailLatency(ctx context.Context, e *env) (*measurement, error) {
	admin := os.Getenv("MAILSLOT_TEST_DATABASE_URL")
	if admin == "" {
		return &measurement{Server: "skipped: MAILSLOT_TEST_DATABASE_URL is not set (make bench sets it)"}, nil
	}
	rate := envInt("MAILSLOT_BENCH_MAIL_RATE", 50)
	dbURL, drop, err := freshDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer drop()
	mp, err := startMailpit(ctx, e.dataRoot)
	if err != nil {
		return nil, err
	}
	defer mp.stop()
	env := append(append([]string{"DATABASE_URL=" + dbURL, "MAILSLOT_NODE_ID=" + benchNode}, benchSecrets...), mailEnv(mp.SMTPAddr)...)
	srv, err := startServer(ctx, e.bin, e.dataRoot, serverOpts{Env: env}, e.serverEnv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	client := &http.Client{Timeout: 10 * time.Second}
	var (
		mu      sync.Mutex
		acked   = map[string]time.Time{} // address -> 202 time
		refused int
		wg      sync.WaitGroup
	)
	// Pace from the clock: by now, rate × elapsed sign-ups were started.
	start := time.Now()
	sent := 0
	for el := time.Since(start); el < e.duration; el = time.Since(start) {
		for ; sent < int(el.Seconds()*float64(rate)); sent++ {
			email := fmt.Sprintf("latency+%d@example.com", sent)
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, err := postJSON(ctx, client, srv.URL+"/v1/leads", `{"email":"`+email+`","property":"bench","consent":"pending"}`)
				at := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if err != nil || code != http.StatusAccepted {
					refused++
					return
				}
				acked[email] = at
			}()
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	want := len(acked)
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := mp.total(ctx, client)
		if err != nil {
			return nil, err
		}
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("mail-latency: Mailpit holds %d of %d confirmations a minute after the last sign-up\n%s", n, want, srv.logTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := mp.messages(ctx, client)
	if err != nil {
		return nil, err
	}
	lats := make([]time.Duration, 0, len(list))
	for _, m := range list {
		if len(m.To) != 1 {
			continue
		}
		if t0, ok := acked[m.To[0].Address]; ok {
			lats = append(lats, max(0, m.Created.Sub(t0)))
			delete(acked, m.To[0].Address)
		}
	}
	if len(acked) > 0 || len(lats) == 0 {
		return nil, fmt.Errorf("mail-latency: %d accepted sign-ups got no confirmation (%d did)", len(acked), len(lats))
	}
	slices.Sort(lats)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 }
	return &measurement{
		Server: fmt.Sprintf("%d sign-ups/s for %s, %d confirmations, %d refused", rate, e.duration, len(lats), refused),
		Extra: []metric{
			{Name: "latency p50", Value: ms(rank(lats, 0.50)), Unit: "ms"},
			{Name: "latency p99", Value: ms(rank(lats, 0.99)), Unit: "ms"},
			{Name: "latency max", Value: ms(lats[len(lats)-1]), Unit: "ms"},
		},
	}, nil
}
