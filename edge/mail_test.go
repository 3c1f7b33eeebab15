package edge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/mailer"
)

// mailNode is a real node with Postgres and SMTP into a Mailpit (through
// a proxy the test can take down).
type mailNode struct {
	t      *testing.T
	n      *edge.Node
	pool   *pgxpool.Pool
	mp     *mailtest.Mailpit
	px     *mailtest.Proxy
	public string
}

func startMailNode(t *testing.T, overrides ...map[string]string) *mailNode {
	t.Helper()
	dbURL := pgtest.NewURL(t)
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	px := mailtest.NewProxy(t, mp.SMTPAddr)
	addr := edgetest.FreeAddr(t)
	env := map[string]string{
		"DATABASE_URL":              dbURL,
		"MAILSLOT_ADDR":             addr,
		"MAILSLOT_PRIVATE_ADDR":     "127.0.0.1:0",
		"MAILSLOT_PUBLIC_URL":       "http://" + addr,
		"MAILSLOT_SMTP_URL":         "smtp://" + px.Addr() + "?starttls=off",
		"MAILSLOT_MAIL_FROM":        "Café Zoë <news@cafe.example>",
		"MAILSLOT_SENDER_NAME":      "Café Zoë Inc.",
		"MAILSLOT_SENDER_ADDRESS":   `100 Rue Saint-Paul\nMontréal QC H2Y 1Z3`,
		"MAILSLOT_SENDER_CONTACT":   "privacy@cafe.example",
		"MAILSLOT_MAIL_MIN_BACKOFF": "50ms",
		"MAILSLOT_MAIL_MAX_BACKOFF": "500ms",
		"MAILSLOT_MAIL_INTERVAL":    "20ms",
		"MAILSLOT_SYNC_INTERVAL":    "20ms",
	}
	for _, o := range overrides {
		maps.Copy(env, o)
	}
	cfg := edgetest.Config(t, env)
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	if n.Mail == nil {
		t.Fatal("no mail dispatcher although SMTP is configured")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node stopped with %v", err)
		}
	})
	return &mailNode{t: t, n: n, pool: pgtest.Pool(t, dbURL), mp: mp, px: px, public: "http://" + addr}
}

func (m *mailNode) post(path, contentType, body string) (int, string) {
	m.t.Helper()
	req, err := http.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if err != nil {
		m.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if strings.HasPrefix(path, "http://"+m.n.PrivateAddr()) {
		req.Header.Set("Authorization", "Bearer "+edgetest.AdminToken)
	} else if strings.Contains(path, "/v1/leads") || strings.Contains(path, "/v1/events") {
		// The marketing site's page posts sign-ups; a link's button posts
		// from the edge's own page, as a browser there would.
		req.Header.Set("Origin", edgetest.Origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (m *mailNode) signUp(email, name string) {
	m.t.Helper()
	code, body := m.post(m.public+"/v1/leads", "application/json",
		`{"email":"`+email+`","property":"cafe.example","consent":"pending","name":"`+name+`"}`)
	if code != http.StatusAccepted {
		m.t.Fatalf("sign-up: %d %s", code, body)
	}
}

func (m *mailNode) text(sql string, args ...any) string {
	m.t.Helper()
	var s *string
	if err := m.pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		m.t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "<null>"
	}
	return *s
}

func (m *mailNode) waitFor(what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			m.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// synced waits until the outbox has nothing left to sync and no mail job
// is due or being sent.
func (m *mailNode) synced() {
	m.t.Helper()
	m.waitFor("sync and mail to settle", func() bool {
		st, err := m.n.Sync.Status(context.Background())
		return err == nil && st.Pending == 0 && m.text(`SELECT count(*)::text FROM mailslot.mail_jobs
			WHERE state = 'sending' OR (state = 'queued' AND next_attempt_at <= now())`) == "0"
	})
}

// TestSignUpConfirmWelcomeUnsubscribe: a sign-up on a real node becomes a
// confirmation in Mailpit; its confirm link's button confirms the lead;
// the welcome follows; the welcome's List-Unsubscribe URL, POSTed the RFC
// 8058 way, withdraws it; a new sign-up then brings nothing.
func TestSignUpConfirmWelcomeUnsubscribe(t *testing.T) {
	m := startMailNode(t)
	if _, err := mailer.NewProperties(m.pool).Set(context.Background(), mailer.Property{
		Property: "cafe.example", DisplayName: "Café Zoë", DoubleOptIn: true, Welcome: true}); err != nil {
		t.Fatal(err)
	}
	m.signUp("zoe@example.org", "Zoë Ñandú")
	list := m.mp.WaitForMessages(t, 1)
	conf := m.mp.Message(t, list[0].ID)
	if !strings.HasPrefix(conf.MessageID, "mailslot.confirmation.") || len(conf.To) != 1 || conf.To[0].Name != "Zoë Ñandú" {
		t.Fatalf("confirmation = %+v", conf)
	}
	if conf.ListUnsubscribe.HeaderPost != "List-Unsubscribe=One-Click" || len(conf.ListUnsubscribe.Links) != 1 {
		t.Errorf("confirmation's List-Unsubscribe = %+v", conf.ListUnsubscribe)
	}
	for _, want := range []string{"Café Zoë Inc.", "Montréal QC H2Y 1Z3", "privacy@cafe.example"} {
		if !strings.Contains(conf.Text, want) {
			t.Errorf("confirmation text lacks the identification %q", want)
		}
	}
	i := strings.Index(conf.Text, m.public+"/v1/confirm?token=")
	if i < 0 {
		t.Fatalf("no confirm link in %q", conf.Text)
	}
	confirm := strings.Fields(conf.Text[i:])[0]

	// Opening the link changes nothing (mail scanners open links); the button does.
	resp, err := http.Get(confirm)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET confirm: %d", resp.StatusCode)
	}
	m.synced()
	if got := m.text(`SELECT consent_status FROM mailslot.leads WHERE email = 'zoe@example.org'`); got != "pending" {
		t.Fatalf("after GET: consent %s, want pending", got)
	}
	if code, body := m.post(confirm, "", ""); code != http.StatusOK {
		t.Fatalf("POST confirm: %d %s", code, body)
	}
	m.waitFor("the lead to be confirmed", func() bool {
		return m.text(`SELECT consent_status || ' ' || (confirmed_at IS NOT NULL) FROM mailslot.leads WHERE email = 'zoe@example.org'`) == "express true"
	})
	list = m.mp.WaitForMessages(t, 2)
	welcome := m.mp.Message(t, list[0].ID) // newest first
	if !strings.HasPrefix(welcome.MessageID, "mailslot.welcome.") || !strings.Contains(welcome.Subject, "Café Zoë") {
		t.Fatalf("second message = %q %q, want the welcome", welcome.MessageID, welcome.Subject)
	}

	// RFC 8058 one-click: POST the List-Unsubscribe URL with its body.
	if len(welcome.ListUnsubscribe.Links) != 1 {
		t.Fatalf("welcome's List-Unsubscribe = %+v", welcome.ListUnsubscribe)
	}
	if code, body := m.post(welcome.ListUnsubscribe.Links[0], "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); code != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d %s", code, body)
	}
	m.waitFor("the lead to be withdrawn", func() bool {
		return m.text(`SELECT consent_status FROM mailslot.leads WHERE email = 'zoe@example.org'`) == "withdrawn"
	})
	// A new sign-up from the withdrawn address within 30 days of its last
	// request brings nothing.
	m.signUp("zoe@example.org", "Zoë")
	m.synced()
	if n := len(m.mp.Messages(t)); n != 2 {
		t.Errorf("mailpit holds %d messages after unsubscribe and a new sign-up, want 2", n)
	}
	st, err := m.n.Mail.Status(context.Background())
	if err != nil || st.Sent != 2 {
		t.Errorf("mail status = %+v, %v; want 2 sent", st, err)
	}
}

// TestSMTPDownSignUpsAcceptedErasureCancels: with SMTP down every sign-up
// is accepted at once; an erasure while their mail is queued removes that
// mail; when SMTP is back the rest goes out, one message per job.
func TestSMTPDownSignUpsAcceptedErasureCancels(t *testing.T) {
	m := startMailNode(t)
	m.px.Down()
	emails := []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org"}
	for _, e := range emails {
		m.signUp(e, "")
	}
	m.waitFor("four queued confirmations", func() bool {
		return m.text(`SELECT count(*)::text FROM mailslot.mail_jobs WHERE kind = 'confirmation'`) == "4"
	})
	code, body := m.post("http://"+m.n.PrivateAddr()+"/admin/erasures", "application/json", `{"email":"c@example.org"}`)
	if code != http.StatusAccepted {
		t.Fatalf("erase: %d %s", code, body)
	}
	m.waitFor("the erased lead's job to go", func() bool {
		return m.text(`SELECT count(*)::text FROM mailslot.mail_jobs`) == "3"
	})
	m.px.Up()
	m.waitFor("three messages", func() bool {
		return m.text(`SELECT count(*)::text FROM mailslot.mail_jobs WHERE state = 'sent'`) == "3"
	})
	m.synced()
	got := map[string]int{}
	for _, s := range m.mp.Messages(t) {
		for _, to := range s.To {
			got[to.Address]++
		}
	}
	want := map[string]int{"a@example.org": 1, "b@example.org": 1, "d@example.org": 1}
	if len(got) != len(want) || got["a@example.org"] != 1 || got["b@example.org"] != 1 || got["d@example.org"] != 1 {
		t.Errorf("messages per recipient = %v, want %v (none to the erased address)", got, want)
	}
	if s := m.text(`SELECT coalesce(string_agg(coalesce(last_error, ''), ' '), '') FROM mailslot.mail_jobs`); strings.Contains(s, "@example.org") {
		t.Errorf("mail jobs' errors name an address: %q", s)
	}
}

const resendSecret = "whsec_" + "bWFpbHNsb3QtdGVzdC13ZWJob29rLXNlY3JldA==" // base64 of a test key

// signedPost posts body to the Resend webhook, signed with key the way
// Svix signs (Standard Webhooks), or with a forged signature.
func (m *mailNode) signedPost(body string, forged bool) (int, string) {
	m.t.Helper()
	id, ts := "msg_"+strconv.FormatInt(time.Now().UnixNano(), 36), strconv.FormatInt(time.Now().Unix(), 10)
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(resendSecret, "whsec_"))
	if forged {
		key = []byte("not the secret")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	req, _ := http.NewRequest(http.MethodPost, m.public+"/v1/webhooks/resend", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", id)
	req.Header.Set("Webhook-Timestamp", ts)
	req.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func resendEvent(typ, emailID, to, bounceType string) string {
	ev := map[string]any{"type": typ, "created_at": time.Now().UTC().Format(time.RFC3339Nano),
		"data": map[string]any{"email_id": emailID, "to": []string{to}, "subject": "x"}}
	if bounceType != "" {
		ev["data"].(map[string]any)["bounce"] = map[string]any{"type": bounceType, "subType": "General", "message": "no such mailbox"}
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// TestResendBounceAndComplaintWithdraw: a node sending through Resend (the
// fake) receives signed bounce and complaint webhooks; a hard bounce or a
// complaint withdraws the address and suppresses it like an unsubscribe,
// a transient bounce changes nothing, and forged deliveries are refused.
func TestResendBounceAndComplaintWithdraw(t *testing.T) {
	fake := mailtest.NewFakeResend(t)
	m := startMailNode(t, map[string]string{
		"MAILSLOT_SMTP_URL":              "",
		"MAILSLOT_RESEND_API_KEY":        mailtest.FakeResendKey,
		"MAILSLOT_RESEND_URL":            fake.URL,
		"MAILSLOT_RESEND_WEBHOOK_SECRET": resendSecret,
	})
	for _, e := range []string{"hard@example.org", "soft@example.org", "spam@example.org", "forged@example.org"} {
		m.signUp(e, "")
	}
	m.waitFor("four messages at Resend", func() bool { return len(fake.Sent()) == 4 })
	m.synced()
	emailID := func(email string) string {
		return m.text(`SELECT j.provider_id FROM mailslot.mail_jobs j JOIN mailslot.leads l ON l.id = j.lead_id WHERE l.email = $1`, email)
	}
	status := func(email string) string {
		return m.text(`SELECT consent_status FROM mailslot.leads WHERE email = $1`, email)
	}
	cases := []struct {
		email, event, bounceType string
		forged                   bool
		code                     int
		want                     string // consent_status afterwards
	}{
		{"forged@example.org", "email.bounced", "Permanent", true, http.StatusUnauthorized, "pending"},
		{"soft@example.org", "email.bounced", "Transient", false, http.StatusOK, "pending"},
		{"hard@example.org", "email.bounced", "Permanent", false, http.StatusOK, "withdrawn"},
		{"spam@example.org", "email.complained", "", false, http.StatusOK, "withdrawn"},
	}
	for _, c := range cases {
		code, body := m.signedPost(resendEvent(c.event, emailID(c.email), c.email, c.bounceType), c.forged)
		if code != c.code {
			t.Errorf("%s %s (forged %v): %d %s, want %d", c.email, c.event, c.forged, code, body, c.code)
		}
	}
	if code, _ := m.signedPost(resendEvent("email.bounced", "re_unknown", "x@example.org", "Permanent"), false); code != http.StatusOK {
		t.Errorf("bounce for an unknown email: %d, want 200 (acknowledged, nothing to do)", code)
	}
	m.synced()
	for _, c := range cases {
		if got := status(c.email); got != c.want {
			t.Errorf("%s after %s: %s, want %s", c.email, c.event, got, c.want)
		}
		suppressed := m.text(`SELECT count(*)::text FROM mailslot.suppressions s JOIN mailslot.leads l ON l.email_hmac = s.email_hmac WHERE l.email = $1`, c.email)
		if (c.want == "withdrawn") != (suppressed == "1") {
			t.Errorf("%s: %s suppressions", c.email, suppressed)
		}
	}
	st, err := m.n.Mail.Status(context.Background())
	if err != nil || st.Bounced != 1 || st.Complained != 1 {
		t.Errorf("mail status = %+v, %v; want one bounce and one complaint", st, err)
	}
	if got := m.text(`SELECT string_agg(source, ',' ORDER BY source) FROM mailslot.consent_records WHERE status = 'withdrawn'`); got != "complaint,hard_bounce" {
		t.Errorf("withdrawal consent records' sources = %q", got)
	}
	// Without the signature headers the body is not even read.
	req, _ := http.NewRequest(http.MethodPost, m.public+"/v1/webhooks/resend", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned webhook: %d, want 401", resp.StatusCode)
	}
}
