package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailslot/mailslot/internal/mail/mailtest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/sync/mailer"
)

// The sender identification every message must carry (CASL), as the test
// edge is configured with it.
const (
	senderName    = "Field Notes Publishing Inc."
	senderAddress = "200 Rue Sainte-Catherine Ouest, Montréal QC H2X 1L1"
	senderContact = "privacy@fieldnotes.example"
)

// TestDoubleOptInInBrowser walks double opt-in end to end with the real
// binary, the example site, Postgres and Mailpit: the form filled in
// Chromium brings a confirmation; its link opened in Chromium shows a page
// whose button confirms the lead in Postgres; the welcome follows with
// RFC 8058 headers and the sender identification; a one-click POST of its
// List-Unsubscribe URL withdraws the lead.
func TestDoubleOptInInBrowser(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	bg := context.Background()
	if _, err := mailer.NewProperties(pool).Set(bg, mailer.Property{
		Property: "example-site", DisplayName: "Field Notes", DoubleOptIn: true, Welcome: true}); err != nil {
		t.Fatalf("turn the welcome on: %v", err)
	}
	edgeAddr := freeAddr(t)
	public := "http://" + edgeAddr
	st := startStackAt(t, edgeAddr,
		"DATABASE_URL="+dbURL,
		"MAILSLOT_PUBLIC_URL="+public,
		"MAILSLOT_SMTP_URL=smtp://"+mp.SMTPAddr+"?starttls=off",
		"MAILSLOT_MAIL_FROM=Field Notes <news@fieldnotes.example>",
		"MAILSLOT_SENDER_NAME="+senderName,
		"MAILSLOT_SENDER_ADDRESS="+senderAddress,
		"MAILSLOT_SENDER_CONTACT="+senderContact,
		"MAILSLOT_SYNC_INTERVAL=50ms",
		"MAILSLOT_MAIL_INTERVAL=50ms",
	)
	leadState := func(email string) string {
		var s string
		err := pool.QueryRow(bg, `SELECT consent_status || ' ' || (confirmed_at IS NOT NULL)::text
			FROM mailslot.leads WHERE email = $1`, email).Scan(&s)
		if err != nil {
			return err.Error()
		}
		return s
	}
	waitMessage := func(prefix string) mailtest.Message {
		t.Helper()
		var id string
		testsync.Until(t, 60*time.Second, "a "+prefix+" message in Mailpit", func() bool {
			for _, s := range mp.Messages(t) {
				if strings.HasPrefix(s.MessageID, prefix) {
					id = s.ID
					return true
				}
			}
			return false
		})
		return mp.Message(t, id)
	}

	ctx := newBrowser(t)
	email := fmt.Sprintf("optin-%d@example.com", time.Now().UnixNano())
	do(t, ctx, 30*time.Second, "open the page",
		chromedp.Navigate(st.site+"/"),
		chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
	)
	do(t, ctx, 30*time.Second, "fill in and submit the form",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS("#consent")),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form#signup[data-mailslot-state=success] [data-mailslot-status]`)),
	)

	conf := waitMessage("mailslot.confirmation.")
	if len(conf.To) != 1 || conf.To[0].Address != email {
		t.Fatalf("confirmation to %+v, want %s", conf.To, email)
	}
	i := strings.Index(conf.Text, public+"/v1/confirm?token=")
	if i < 0 {
		t.Fatalf("the confirmation has no confirm link to %s:\n%s", public, conf.Text)
	}
	confirmURL := strings.Fields(conf.Text[i:])[0]
	if got := leadState(email); got != "express false" {
		t.Fatalf("before the button the lead is %q, want express and unconfirmed", got)
	}

	// Opening the link only shows the page (mail scanners open links).
	do(t, ctx, 30*time.Second, "open the confirm link",
		chromedp.Navigate(confirmURL),
		chromedp.WaitVisible(chromedp.CSS(`form[method=post] button[type=submit]`)),
	)
	if h1 := run(t, ctx, "read the heading", chromedp.Text(chromedp.CSS("h1"))); h1 != "Confirm your subscription" {
		t.Errorf("confirm page heading = %q", h1)
	}
	// RunResponse waits for the navigation the button's post makes.
	pressCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := chromedp.RunResponse(pressCtx, chromedp.Click(chromedp.CSS(`form[method=post] button[type=submit]`)))
	cancel()
	if err != nil {
		t.Fatalf("press the button: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("the button's post answered %d", resp.Status)
	}
	do(t, ctx, 30*time.Second, "show the done page", chromedp.WaitNotPresent(chromedp.CSS("form")))
	if h1 := run(t, ctx, "read the heading", chromedp.Text(chromedp.CSS("h1"))); h1 != "Subscription confirmed" {
		t.Fatalf("after the button the page says %q, want Subscription confirmed", h1)
	}
	testsync.UntilState(t, 30*time.Second, "the lead confirmed in Postgres", func() (bool, string) {
		s := leadState(email)
		return s == "express true", s
	})

	welcome := waitMessage("mailslot.welcome.")
	if len(welcome.To) != 1 || welcome.To[0].Address != email {
		t.Fatalf("welcome to %+v, want %s", welcome.To, email)
	}
	h := mp.Headers(t, welcome.ID)
	header := func(name string) string {
		if v := h[name]; len(v) == 1 {
			return v[0]
		}
		t.Errorf("welcome header %s = %q, want one value", name, h[name])
		return ""
	}
	if mid := header("Message-Id"); !strings.HasPrefix(mid, "<mailslot.welcome.") || !strings.HasSuffix(mid, ">") {
		t.Errorf("Message-ID = %q, want one derived from the job", mid)
	}
	if post := header("List-Unsubscribe-Post"); post != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", post)
	}
	lu := header("List-Unsubscribe")
	if !strings.HasPrefix(lu, "<"+public+"/v1/unsubscribe?token=") || !strings.HasSuffix(lu, ">") {
		t.Fatalf("List-Unsubscribe = %q, want the signed https link in angle brackets", lu)
	}
	unsubURL := strings.TrimSuffix(strings.TrimPrefix(lu, "<"), ">")
	for _, part := range []struct{ name, body string }{{"text", welcome.Text}, {"HTML", welcome.HTML}} {
		for _, want := range []string{senderName, "Montréal QC H2X 1L1", senderContact} {
			if !strings.Contains(part.body, want) {
				t.Errorf("the welcome's %s part lacks the identification %q", part.name, want)
			}
		}
		if !strings.Contains(part.body, public+"/v1/unsubscribe?token=") {
			t.Errorf("the welcome's %s part has no unsubscribe link", part.name)
		}
	}

	// RFC 8058: the mail provider POSTs the URL with this body, no cookies,
	// no page.
	oneClick, err := http.Post(unsubURL, "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()))
	if err != nil {
		t.Fatalf("one-click unsubscribe: %v", err)
	}
	oneClick.Body.Close()
	if oneClick.StatusCode != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d", oneClick.StatusCode)
	}
	testsync.UntilState(t, 30*time.Second, "the lead withdrawn in Postgres", func() (bool, string) {
		s := leadState(email)
		return strings.HasPrefix(s, "withdrawn "), s
	})
}

// startStackAt is startStackEnv with the edge on a chosen address, for an
// edge whose public URL must be known before it starts.
func startStackAt(t *testing.T, edgeAddr string, extraEnv ...string) *stack {
	t.Helper()
	site := startSite(t, "http://"+edgeAddr, nil)
	st := &stack{edge: "http://" + edgeAddr, site: site, dataDir: t.TempDir()}
	startEdge(t, edgeAddr, site, st.dataDir, extraEnv...)
	return st
}
