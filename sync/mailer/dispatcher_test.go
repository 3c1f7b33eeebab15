package mailer_test

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/mailer"
)

// These tests run a Dispatcher against a fresh Postgres 18 database and a
// real Mailpit (through an SMTP-aware proxy when a test needs to break the
// connection). Leads and jobs are written with SQL, as the sync writes
// them; sync/drain's tests cover who is queued what.

const (
	publicURL = "https://edge.example.com"
	property  = "cafe.example"
)

var (
	hasher = pii.NewHasher([]byte("mailer-test-pepper"))
	keys   = mustKeys("k1:mailer-test-token-key-0123456789")
	sender = mail.Sender{Name: "Café Zoë Inc.", PostalAddress: "100 Rue Saint-Paul\nMontréal QC H2Y 1Z3", Contact: "privacy@cafe.example"}
)

func mustKeys(s string) *token.Keys {
	k, err := token.ParseKeys(s)
	if err != nil {
		panic(err)
	}
	return k
}

type env struct {
	t     *testing.T
	pool  *pgxpool.Pool
	mp    *mailtest.Mailpit
	px    *mailtest.Proxy
	dbURL string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dbURL := pgtest.NewURL(t)
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	return &env{t: t, pool: pgtest.Pool(t, dbURL), mp: mp, px: mailtest.NewProxy(t, mp.SMTPAddr), dbURL: dbURL}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) int(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// lead inserts a lead and returns its id.
func (e *env) lead(email, name string) int64 {
	e.t.Helper()
	var id int64
	var n *string
	if name != "" {
		n = &name
	}
	err := e.pool.QueryRow(context.Background(), `
		INSERT INTO mailslot.leads (property, email, email_hmac, name, consent_basis, first_seen_at, last_seen_at)
		VALUES ($1, $2, $3, $4, 'pending', now(), now()) RETURNING id`, property, email, hasher.Email(email), n).Scan(&id)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// job queues a job for lead and returns its id.
func (e *env) job(lead int64, kind string, afterWithdrawal bool) int64 {
	e.t.Helper()
	var id int64
	if err := e.pool.QueryRow(context.Background(), `
		INSERT INTO mailslot.mail_jobs (lead_id, property, kind, after_withdrawal) VALUES ($1, $2, $3, $4) RETURNING id`,
		lead, property, kind, afterWithdrawal).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) state(job int64) string {
	e.t.Helper()
	j, err := mailer.NewStore(e.pool).Get(context.Background(), job)
	if err != nil {
		e.t.Fatal(err)
	}
	return j.State
}

// waitFor polls until cond holds, for at most 20 s.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled waits until no job is queued and due or being sent.
func (e *env) settled() {
	e.t.Helper()
	e.waitFor("the queue to settle", func() bool {
		return e.int(`SELECT count(*) FROM mailslot.mail_jobs WHERE state = 'sending' OR (state = 'queued' AND next_attempt_at <= now())`) == 0
	})
}

// start runs a dispatcher sending through the proxy until the test ends.
func (e *env) start(edit ...func(*mailer.Options)) *mailer.Dispatcher {
	e.t.Helper()
	tr, err := mail.NewSMTP("smtp://"+e.px.Addr()+"?starttls=off", mail.SMTPOptions{Timeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.startWith(tr, "smtp", edit...)
}

func (e *env) startWith(tr mail.Transport, name string, edit ...func(*mailer.Options)) *mailer.Dispatcher {
	e.t.Helper()
	opts := mailer.Options{
		DatabaseURL: e.dbURL, Transport: tr, TransportName: name,
		From:   netmail.Address{Name: "Café Zoë", Address: "news@cafe.example"},
		Sender: sender, Tokens: keys, PublicURL: publicURL, Owner: "test-edge",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Interval: 20 * time.Millisecond,
	}
	for _, f := range edit {
		f(&opts)
	}
	d, err := mailer.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return d
}

func TestConfirmationArrivesWithItsHeadersAndIdentification(t *testing.T) {
	e := newEnv(t)
	e.exec(`INSERT INTO mailslot.properties (property, display_name) VALUES ($1, 'Café Zoë Newsletter')`, property)
	lead := e.lead("zoe@example.org", "Zoë Ñandú")
	job := e.job(lead, "confirmation", false)
	e.start()
	e.waitFor("the job to be sent", func() bool { return e.state(job) == mailer.StateSent })

	list := e.mp.WaitForMessages(t, 1)
	if len(list) != 1 {
		t.Fatalf("mailpit holds %d messages, want 1", len(list))
	}
	m := e.mp.Message(t, list[0].ID)
	if want := fmt.Sprintf("mailslot.confirmation.%d@cafe.example", job); m.MessageID != want {
		t.Errorf("Message-ID = %q, want %q", m.MessageID, want)
	}
	if len(m.To) != 1 || m.To[0].Name != "Zoë Ñandú" || m.To[0].Address != "zoe@example.org" {
		t.Errorf("To = %+v", m.To)
	}
	if m.From == nil || m.From.Name != "Café Zoë" {
		t.Errorf("From = %+v", m.From)
	}
	if !strings.Contains(m.Subject, "Café Zoë Newsletter") {
		t.Errorf("Subject = %q; want the display name", m.Subject)
	}
	if m.ListUnsubscribe.HeaderPost != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", m.ListUnsubscribe.HeaderPost)
	}
	if len(m.ListUnsubscribe.Links) != 1 {
		t.Fatalf("List-Unsubscribe links = %q", m.ListUnsubscribe.Links)
	}
	checkLink(t, m.ListUnsubscribe.Links[0], "/v1/unsubscribe", token.Unsubscribe, "zoe@example.org")
	for _, want := range []string{"Café Zoë Inc.", "100 Rue Saint-Paul", "Montréal QC H2Y 1Z3", "privacy@cafe.example", publicURL + "/v1/confirm?token="} {
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) {
			t.Errorf("text or HTML lacks %q", want)
		}
	}
	i := strings.Index(m.Text, publicURL+"/v1/confirm?token=")
	confirm := strings.Fields(m.Text[i:])[0]
	checkLink(t, confirm, "/v1/confirm", token.Confirm, "zoe@example.org")
	raw := e.mp.Raw(t, list[0].ID)
	if strings.Contains(strings.SplitN(raw, "\r\n\r\n", 2)[0], "Zoë") {
		t.Errorf("headers carry raw UTF-8; want RFC 2047 encoded words")
	}
	if got := e.int(`SELECT count(*) FROM mailslot.mail_jobs WHERE id = $1 AND sent_at IS NOT NULL AND message_id LIKE '<mailslot.confirmation.%'`, job); got != 1 {
		t.Errorf("the sent job does not record its time and Message-ID")
	}
}

// checkLink verifies that link is a signed link for purpose on the
// property and the address.
func checkLink(t *testing.T, link, path, purpose, email string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Scheme+"://"+u.Host != publicURL || u.Path != path {
		t.Fatalf("link %q is not %s%s", link, publicURL, path)
	}
	c, err := keys.Verify(u.Query().Get("token"), purpose, time.Now())
	if err != nil {
		t.Fatalf("link %q: %v", link, err)
	}
	if c.Property != property || string(c.EmailHMAC) != string(hasher.Email(email)) {
		t.Errorf("link %q is for %q and another address", link, c.Property)
	}
	if strings.Contains(link, "example.org") {
		t.Errorf("link %q carries the address", link)
	}
}

func TestSMTPDownForAWhileThenEveryJobGoesOutOnce(t *testing.T) {
	e := newEnv(t)
	e.px.Down()
	var jobs []int64
	for i := range 20 {
		jobs = append(jobs, e.job(e.lead(fmt.Sprintf("p%02d@example.org", i), ""), "confirmation", false))
	}
	d := e.start()
	e.waitFor("failed attempts while SMTP is down", func() bool {
		return e.int(`SELECT count(*) FROM mailslot.mail_jobs WHERE attempts > 0 AND state = 'queued' AND last_error IS NOT NULL`) > 0
	})
	e.waitFor("the dispatcher to report backoff", func() bool {
		st, err := d.Status(context.Background())
		return err == nil && st.State == mailer.StateBackoff && st.Reason != ""
	})
	if st, err := d.Status(context.Background()); err != nil || st.Sent != 0 || st.LastError == "" {
		t.Errorf("status while down = %+v, %v; want nothing sent and the error", st, err)
	}
	e.px.Up()
	e.waitFor("every job to be sent", func() bool {
		return e.int(`SELECT count(*) FROM mailslot.mail_jobs WHERE state = 'sent'`) == int64(len(jobs))
	})
	list := e.mp.WaitForMessages(t, len(jobs))
	ids := map[string]int{}
	for _, m := range list {
		ids[m.MessageID]++
	}
	for _, j := range jobs {
		if n := ids[fmt.Sprintf("mailslot.confirmation.%d@cafe.example", j)]; n != 1 {
			t.Errorf("job %d: %d messages, want exactly 1", j, n)
		}
	}
	if len(list) != len(jobs) {
		t.Errorf("mailpit holds %d messages for %d jobs", len(list), len(jobs))
	}
	if got := e.int(`SELECT count(*) FROM mailslot.mail_jobs WHERE state = 'dead'`); got != 0 {
		t.Errorf("%d jobs dead after a short outage", got)
	}
}

func TestLostReplyToDataIsUncertainAndNotResent(t *testing.T) {
	e := newEnv(t)
	first := e.job(e.lead("a@example.org", ""), "confirmation", false)
	e.px.LoseNextDataReply()
	e.start()
	e.waitFor("the first job to be recorded", func() bool { return e.state(first) != mailer.StateQueued && e.state(first) != mailer.StateSending })
	if got := e.state(first); got != mailer.StateUncertain {
		t.Fatalf("job with a lost end-of-DATA reply is %s, want uncertain", got)
	}
	second := e.job(e.lead("b@example.org", ""), "confirmation", false)
	e.waitFor("the second job to be sent", func() bool { return e.state(second) == mailer.StateSent })
	e.settled()
	if n := len(e.mp.Messages(t)); n != 2 || e.px.DataRepliesLost() != 1 {
		t.Fatalf("mailpit holds %d messages (replies lost: %d); want 2: the uncertain one was delivered once, not again", n, e.px.DataRepliesLost())
	}
	// The operator decides it did not arrive: it is sent again, with the same Message-ID.
	if _, err := mailer.NewStore(e.pool).Retry(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the retried job to be sent", func() bool { return e.state(first) == mailer.StateSent })
	same := 0
	for _, m := range e.mp.WaitForMessages(t, 3) {
		if m.MessageID == fmt.Sprintf("mailslot.confirmation.%d@cafe.example", first) {
			same++
		}
	}
	if same != 2 {
		t.Errorf("%d messages carry the uncertain job's Message-ID after the retry, want 2", same)
	}
}

func TestIneligibleJobsAreSkippedAtSendTime(t *testing.T) {
	e := newEnv(t)
	type tc struct {
		name  string
		setup func(lead int64) int64 // returns the job
		want  string
	}
	withdraw := func(lead int64) {
		e.exec(`UPDATE mailslot.leads SET withdrawn_at = now() WHERE id = $1`, lead)
	}
	cases := []tc{
		{"confirmation to a fresh lead", func(l int64) int64 { return e.job(l, "confirmation", false) }, mailer.StateSent},
		{"welcome to a fresh lead", func(l int64) int64 { return e.job(l, "welcome", false) }, mailer.StateSent},
		{"welcome after a withdrawal", func(l int64) int64 { withdraw(l); return e.job(l, "welcome", false) }, mailer.StateSkipped},
		{"confirmation queued before a withdrawal", func(l int64) int64 {
			j := e.job(l, "confirmation", false)
			withdraw(l)
			return j
		}, mailer.StateSkipped},
		{"request after a withdrawal", func(l int64) int64 {
			e.exec(`UPDATE mailslot.leads SET withdrawn_at = now() - interval '1 day' WHERE id = $1`, l)
			return e.job(l, "confirmation", true)
		}, mailer.StateSent},
		{"request after a withdrawal, withdrawn again", func(l int64) int64 {
			j := e.job(l, "confirmation", true)
			withdraw(l)
			return j
		}, mailer.StateSkipped},
		{"request after an erasure-wide suppression", func(l int64) int64 {
			e.exec(`INSERT INTO mailslot.suppressions (email_hmac, property, reason, created_at)
				SELECT email_hmac, '', 'erased', now() - interval '1 day' FROM mailslot.leads WHERE id = $1`, l)
			return e.job(l, "confirmation", true)
		}, mailer.StateSent},
		{"confirmation to a suppressed address", func(l int64) int64 {
			j := e.job(l, "confirmation", false)
			e.exec(`INSERT INTO mailslot.suppressions (email_hmac, property, reason, created_at)
				SELECT email_hmac, $2, 'unsubscribed', now() FROM mailslot.leads WHERE id = $1`, l, property)
			return j
		}, mailer.StateSkipped},
		{"confirmation to a confirmed address", func(l int64) int64 {
			e.exec(`UPDATE mailslot.leads SET confirmed_at = now() WHERE id = $1`, l)
			return e.job(l, "confirmation", false)
		}, mailer.StateSkipped},
		{"welcome after a withdrawal lifted by confirming", func(l int64) int64 {
			e.exec(`UPDATE mailslot.leads SET withdrawn_at = now() - interval '1 hour', confirmed_at = now() WHERE id = $1`, l)
			return e.job(l, "welcome", false)
		}, mailer.StateSent},
		{"job older than the maximum age", func(l int64) int64 {
			j := e.job(l, "confirmation", false)
			e.exec(`UPDATE mailslot.mail_jobs SET created_at = now() - interval '4 days' WHERE id = $1`, j)
			return j
		}, mailer.StateSkipped},
	}
	jobs := make([]int64, len(cases))
	for i, c := range cases {
		jobs[i] = c.setup(e.lead(fmt.Sprintf("x%02d@example.org", i), ""))
	}
	e.start()
	e.settled()
	sent := 0
	for i, c := range cases {
		if got := e.state(jobs[i]); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if c.want == mailer.StateSent {
			sent++
		}
	}
	if n := len(e.mp.Messages(t)); n != sent {
		t.Errorf("mailpit holds %d messages, want %d (one per sent job, none for skipped ones)", n, sent)
	}
}

func TestRefusalsFailOrRetryUntilDead(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	mp := mailtest.StartMailpit(t, mailtest.Options{Chaos: true})
	e := &env{t: t, pool: pgtest.Pool(t, dbURL), mp: mp, px: mailtest.NewProxy(t, mp.SMTPAddr), dbURL: dbURL}
	mp.SetChaos(t, mailtest.Chaos{Recipient: mailtest.ChaosTrigger{ErrorCode: 550, Probability: 100}})
	permanent := e.job(e.lead("gone@example.org", ""), "confirmation", false)
	e.start(func(o *mailer.Options) { o.MaxAttempts = 3 })
	e.waitFor("the refused job to be recorded", func() bool { return e.state(permanent) == mailer.StateFailed })
	mp.SetChaos(t, mailtest.Chaos{Recipient: mailtest.ChaosTrigger{ErrorCode: 451, Probability: 100}})
	temporary := e.job(e.lead("later@example.org", ""), "confirmation", false)
	e.waitFor("the deferred job to run out of attempts", func() bool { return e.state(temporary) == mailer.StateDead })
	j, err := mailer.NewStore(e.pool).Get(context.Background(), temporary)
	if err != nil || j.Attempts != 3 || !strings.Contains(j.LastError, "451") {
		t.Errorf("dead job = %+v, %v; want 3 attempts and the 451 reply", j, err)
	}
	for _, id := range []int64{permanent, temporary} {
		j, _ := mailer.NewStore(e.pool).Get(context.Background(), id)
		if strings.Contains(j.LastError, "@example.org") {
			t.Errorf("job %d's last error names the address: %q", id, j.LastError)
		}
	}
}

func TestResendRecordsTheEmailIDForFeedback(t *testing.T) {
	e := newEnv(t)
	fake := mailtest.NewFakeResend(t)
	tr, err := mail.NewResend(mailtest.FakeResendKey, mail.ResendOptions{BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	job := e.job(e.lead("r@example.org", "Ré"), "confirmation", false)
	e.startWith(tr, "resend")
	e.waitFor("the job to be sent", func() bool { return e.state(job) == mailer.StateSent })
	sent := fake.Sent()
	j, err := mailer.NewStore(e.pool).Get(context.Background(), job)
	if err != nil || len(sent) != 1 || j.ProviderID != sent[0] {
		t.Fatalf("job = %+v, %v; fake sent %q", j, err, sent)
	}
	prop, h, ok, err := mailer.NewStore(e.pool).RecordFeedback(context.Background(), sent[0], "bounce")
	if err != nil || !ok || prop != property || string(h) != string(hasher.Email("r@example.org")) {
		t.Fatalf("RecordFeedback = %q, %x, %v, %v", prop, h, ok, err)
	}
	if _, _, ok, err := mailer.NewStore(e.pool).RecordFeedback(context.Background(), "unknown-id", "bounce"); ok || err != nil {
		t.Errorf("feedback for an unknown id: %v, %v", ok, err)
	}
	c, err := mailer.ReadCounts(context.Background(), e.pool)
	if err != nil || c.Bounced != 1 || c.Sent != 1 {
		t.Errorf("counts = %+v, %v", c, err)
	}
}

func TestRetryAndCancelFollowTheStates(t *testing.T) {
	e := newEnv(t)
	st := mailer.NewStore(e.pool)
	ctx := context.Background()
	queued := e.job(e.lead("q@example.org", ""), "confirmation", false)
	if j, err := st.Cancel(ctx, queued); err != nil || j.State != mailer.StateCancelled {
		t.Fatalf("cancel queued: %+v, %v", j, err)
	}
	if j, err := st.Retry(ctx, queued); err != nil || j.State != mailer.StateQueued || j.Attempts != 0 {
		t.Fatalf("retry cancelled: %+v, %v", j, err)
	}
	e.exec(`UPDATE mailslot.mail_jobs SET state = 'sent' WHERE id = $1`, queued)
	var se *mailer.StateError
	if _, err := st.Cancel(ctx, queued); !errors.As(err, &se) || se.State != mailer.StateSent {
		t.Errorf("cancel sent: %v; want a StateError", err)
	}
	if _, err := st.Retry(ctx, queued); !errors.As(err, &se) {
		t.Errorf("retry sent: %v; want a StateError", err)
	}
	if _, err := st.Get(ctx, 999999); !errors.Is(err, mailer.ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	jobs, err := st.List(ctx, mailer.StateSent, 10)
	if err != nil || len(jobs) != 1 || !slices.Contains(mailer.States, jobs[0].State) {
		t.Errorf("list sent: %+v, %v", jobs, err)
	}
}
