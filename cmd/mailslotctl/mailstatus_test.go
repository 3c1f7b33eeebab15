package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
	"github.com/mailslot/mailslot/internal/pgtest"
)

// TestStatusShowsMail: the mail queue's counts, seeded in every state,
// appear in `mailslotctl status`, in the edge's /v1/sync/status and in its
// /metrics; a fleet without mail gets no mail line.
func TestStatusShowsMail(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := privEnv(dbURL)
	out, _, err := privCtl(t, env, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if strings.Contains(out, "mail:") {
		t.Errorf("status of a fleet without mail shows a mail line:\n%s", out)
	}

	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	var lead int64
	if err := pool.QueryRow(ctx, `INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('cafe.example', 'u@example.org', '\x01', 'pending', now(), now()) RETURNING id`).Scan(&lead); err != nil {
		t.Fatal(err)
	}
	// Queued jobs are due in an hour, so that the running dispatcher
	// leaves them alone; every other state is final.
	for _, j := range []struct {
		state, feedback string
		n               int
	}{
		{"queued", "", 2}, {"sent", "", 3}, {"sent", "bounce", 2}, {"sent", "complaint", 1},
		{"failed", "", 4}, {"dead", "", 5}, {"skipped", "", 6}, {"uncertain", "", 7}, {"cancelled", "", 8},
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO mailslot.mail_jobs (lead_id, property, kind, state, feedback, next_attempt_at)
			SELECT $1, 'cafe.example', 'confirmation', $2, NULLIF($3, ''), now() + interval '1 hour' FROM generate_series(1, $4)`,
			lead, j.state, j.feedback, j.n); err != nil {
			t.Fatalf("seed %s jobs: %v", j.state, err)
		}
	}

	out, _, err = privCtl(t, env, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	want := "mail: queued 2 (0 due), sending 0, sent 6, failed 4, dead 5, bounced 2, complained 1, skipped 6, uncertain 7, cancelled 8"
	if !strings.Contains(out, want+"\n") || !strings.Contains(out, "mail: 7 uncertain") {
		t.Errorf("status lacks %q and the uncertain hint:\n%s", want, out)
	}

	mp := mailtest.StartMailpit(t, mailtest.Options{})
	cfg := edgetest.Config(t, map[string]string{
		"MAILSLOT_NODE_ID": "mail-status-edge", "DATABASE_URL": dbURL,
		"MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_SMTP_URL": "smtp://" + mp.SMTPAddr + "?starttls=off", "MAILSLOT_MAIL_FROM": "Café <news@cafe.example>",
		"MAILSLOT_SENDER_NAME": "Café Inc.", "MAILSLOT_SENDER_ADDRESS": "1 Rue A, Montréal QC", "MAILSLOT_SENDER_CONTACT": "privacy@cafe.example",
	})
	n, err := edge.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node run: %v", err)
		}
	})
	private := "http://" + n.PrivateAddr()

	var st struct {
		Mail *struct {
			Transport                                               string
			Queued, Sent, Failed, Dead, Bounced, Skipped, Uncertain int64
			Complained, Cancelled                                   int64
		} `json:"mail"`
	}
	getJSON(t, private+"/v1/sync/status", &st)
	if m := st.Mail; m == nil || m.Queued != 2 || m.Sent != 6 || m.Failed != 4 || m.Dead != 5 || m.Bounced != 2 ||
		m.Skipped != 6 || m.Uncertain != 7 || m.Complained != 1 || m.Cancelled != 8 {
		t.Errorf("/v1/sync/status mail = %+v", st.Mail)
	}

	req, _ := http.NewRequest(http.MethodGet, private+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+edgetest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"mailslot_mail_jobs_queued 2\n", "mailslot_mail_jobs_sent 6\n", "mailslot_mail_jobs_failed 4\n",
		"mailslot_mail_jobs_dead 5\n", "mailslot_mail_jobs_bounced 2\n", "mailslot_mail_jobs_complained 1\n",
		"mailslot_mail_jobs_skipped 6\n", "mailslot_mail_jobs_uncertain 7\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}
