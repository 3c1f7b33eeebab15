package mail_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
)

func newSMTP(tb testing.TB, rawURL string, opts mail.SMTPOptions) *mail.SMTP {
	tb.Helper()
	tr, err := mail.NewSMTP(rawURL, opts)
	if err != nil {
		tb.Fatalf("NewSMTP: %v", err)
	}
	tb.Cleanup(func() { _ = tr.Close() })
	return tr
}

func sendErr(tb testing.TB, err error) *mail.SendError {
	tb.Helper()
	var se *mail.SendError
	if !errors.As(err, &se) {
		tb.Fatalf("error %v (%T) is not a *mail.SendError", err, err)
	}
	return se
}

// TestSMTPReusesOneConnection counts the TCP connections a proxy accepts
// while several messages are sent, and checks that a broken connection is
// replaced by a new one.
func TestSMTPReusesOneConnection(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	px := mailtest.NewProxy(t, mp.SMTPAddr)
	tr := newSMTP(t, "smtp://"+px.Addr(), mail.SMTPOptions{})
	ctx := context.Background()

	const n = 5
	for i := range n {
		if _, err := tr.Send(ctx, compose(t, draft("reuse-"+string(rune('a'+i))))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if got := px.Accepted(); got != 1 {
		t.Errorf("%d messages took %d connections, want 1", n, got)
	}
	if got := len(mp.WaitForMessages(t, n)); got != n {
		t.Errorf("Mailpit holds %d messages, want %d", got, n)
	}

	px.CutAll() // the server (or a middlebox) drops the idle connection
	if _, err := tr.Send(ctx, compose(t, draft("after-cut"))); err != nil {
		t.Fatalf("Send after the connection broke: %v", err)
	}
	if got := px.Accepted(); got != 2 {
		t.Errorf("after a cut: %d connections, want 2", got)
	}
	mp.WaitForMessages(t, n+1)
}

func TestSMTPServerDownIsTemporary(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	px := mailtest.NewProxy(t, mp.SMTPAddr)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	_ = ln.Close()

	tests := []struct {
		name string
		url  string
		prep func()
	}{
		{"nothing listening", "smtp://" + closedAddr, func() {}},
		{"connection reset at connect", "smtp://" + px.Addr(), px.Down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newSMTP(t, tt.url, mail.SMTPOptions{Timeout: 5 * time.Second})
			tt.prep()
			_, err := tr.Send(context.Background(), compose(t, draft("down")))
			se := sendErr(t, err)
			if se.Class != mail.Temporary || se.Op != "connect" {
				t.Errorf("got %v, want a temporary connect error", err)
			}
		})
	}
	px.Up()
	if n := len(mp.Messages(t)); n != 0 {
		t.Errorf("Mailpit holds %d messages", n)
	}
}

// TestSMTPLostReplyIsUncertain: the server accepts the message, the
// connection breaks before its 250 reaches the client. The message is in
// the mailbox and the error says it may have been delivered.
func TestSMTPLostReplyIsUncertain(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	px := mailtest.NewProxy(t, mp.SMTPAddr)
	tr := newSMTP(t, "smtp://"+px.Addr(), mail.SMTPOptions{Timeout: 5 * time.Second})

	m := compose(t, draft("lost-reply"))
	px.LoseNextDataReply()
	_, err := tr.Send(context.Background(), m)
	se := sendErr(t, err)
	if se.Class != mail.Uncertain || se.Op != "end of data" || !mail.IsUncertain(err) {
		t.Fatalf("got %v, want uncertain at end of data", err)
	}
	if px.DataRepliesLost() != 1 {
		t.Fatalf("the proxy lost %d replies, want 1", px.DataRepliesLost())
	}
	list := mp.WaitForMessages(t, 1)
	if "<"+list[0].MessageID+">" != m.MessageID {
		t.Errorf("stored Message-ID %q, want %q", list[0].MessageID, m.MessageID)
	}
	if strings.Contains(err.Error(), "zoe@example.org") {
		t.Errorf("error names the recipient: %v", err)
	}

	// The transport recovers with a new connection.
	if _, err := tr.Send(context.Background(), compose(t, draft("after-lost"))); err != nil {
		t.Fatalf("Send after an uncertain one: %v", err)
	}
	mp.WaitForMessages(t, 2)
}

// TestSMTPReplyCodes has Mailpit refuse senders and recipients with the
// codes a real server uses.
func TestSMTPReplyCodes(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{Chaos: true})
	tr := newSMTP(t, "smtp://"+mp.SMTPAddr, mail.SMTPOptions{})
	tests := []struct {
		name  string
		chaos mailtest.Chaos
		class mail.Class
		op    string
		code  int
	}{
		{"recipient refused for good", mailtest.Chaos{Recipient: mailtest.ChaosTrigger{ErrorCode: 550, Probability: 100}}, mail.Permanent, "rcpt to", 550},
		{"recipient deferred", mailtest.Chaos{Recipient: mailtest.ChaosTrigger{ErrorCode: 451, Probability: 100}}, mail.Temporary, "rcpt to", 451},
		{"sender refused for good", mailtest.Chaos{Sender: mailtest.ChaosTrigger{ErrorCode: 553, Probability: 100}}, mail.Permanent, "mail from", 553},
		{"sender deferred", mailtest.Chaos{Sender: mailtest.ChaosTrigger{ErrorCode: 421, Probability: 100}}, mail.Temporary, "mail from", 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp.SetChaos(t, tt.chaos)
			_, err := tr.Send(context.Background(), compose(t, draft("chaos")))
			se := sendErr(t, err)
			if se.Class != tt.class || se.Op != tt.op || se.Code != tt.code {
				t.Errorf("got %v (class %v, op %q, code %d), want %v %q %d", err, se.Class, se.Op, se.Code, tt.class, tt.op, tt.code)
			}
			if strings.Contains(err.Error(), "zoe@example.org") {
				t.Errorf("error names the recipient: %v", err)
			}
		})
	}
	mp.SetChaos(t, mailtest.Chaos{})
	if _, err := tr.Send(context.Background(), compose(t, draft("calm"))); err != nil {
		t.Fatalf("Send without chaos: %v", err)
	}
	if n := len(mp.WaitForMessages(t, 1)); n != 1 {
		t.Errorf("Mailpit holds %d messages, want 1", n)
	}
}

func TestSMTPAuth(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{Users: map[string]string{"mailer": "s3cret-pass"}})
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"right password", "smtp://mailer:s3cret-pass@" + mp.SMTPAddr + "?starttls=off", true},
		{"login mechanism", "smtp://mailer:s3cret-pass@" + mp.SMTPAddr + "?starttls=off&auth=login", true},
		{"wrong password", "smtp://mailer:wrong-pass-XYZ@" + mp.SMTPAddr + "?starttls=off", false},
		{"no credentials", "smtp://" + mp.SMTPAddr, false},
		{"required STARTTLS not offered", "smtp://mailer:s3cret-pass@" + mp.SMTPAddr, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp.DeleteAll(t)
			tr := newSMTP(t, tt.url, mail.SMTPOptions{})
			_, err := tr.Send(context.Background(), compose(t, draft("auth")))
			if tt.ok {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if got := mp.WaitForMessages(t, 1)[0].Username; got != "mailer" {
					t.Errorf("Mailpit saw user %q", got)
				}
				return
			}
			if !mail.IsTemporary(err) {
				t.Fatalf("got %v, want a temporary error", err)
			}
			for _, secret := range []string{"s3cret-pass", "wrong-pass-XYZ"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(tr.String(), secret) {
					t.Errorf("the password shows: %v / %s", err, tr)
				}
			}
			if n := len(mp.Messages(t)); n != 0 {
				t.Errorf("Mailpit holds %d messages", n)
			}
		})
	}
}

// TestSMTPTLS runs implicit TLS (smtps://) and required STARTTLS against
// Mailpit with a self-signed certificate.
func TestSMTPTLS(t *testing.T) {
	cert := mailtest.NewCert(t)
	implicit := mailtest.StartMailpit(t, mailtest.Options{Cert: cert, ImplicitTLS: true})
	starttls := mailtest.StartMailpit(t, mailtest.Options{Cert: cert, RequireSTARTTLS: true})
	trusted := mail.SMTPOptions{RootCAs: cert.Pool, Timeout: 5 * time.Second}
	tests := []struct {
		name string
		mp   *mailtest.Mailpit
		url  string
		opts mail.SMTPOptions
		ok   bool
	}{
		{"smtps with auth", implicit, "smtps://mailer:pw@" + implicit.SMTPAddr, trusted, true},
		{"smtps by name", implicit, "smtps://localhost:" + port(implicit.SMTPAddr), trusted, true},
		{"smtps, untrusted certificate", implicit, "smtps://" + implicit.SMTPAddr, mail.SMTPOptions{Timeout: 5 * time.Second}, false},
		{"smtps, wrong server name", implicit, "smtps://" + implicit.SMTPAddr, mail.SMTPOptions{RootCAs: cert.Pool, ServerName: "mail.example.com", Timeout: 5 * time.Second}, false},
		{"smtps, skip verify on loopback", implicit, "smtps://" + implicit.SMTPAddr, mail.SMTPOptions{InsecureSkipVerify: true}, true},
		{"plain smtp to an smtps port", implicit, "smtp://" + implicit.SMTPAddr + "?starttls=off", mail.SMTPOptions{Timeout: 2 * time.Second}, false},
		{"starttls required (default with auth)", starttls, "smtp://mailer:pw@" + starttls.SMTPAddr, trusted, true},
		{"starttls opportunistic", starttls, "smtp://" + starttls.SMTPAddr + "?starttls=opportunistic", trusted, true},
		{"starttls off, server requires it", starttls, "smtp://" + starttls.SMTPAddr + "?starttls=off", trusted, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.mp.DeleteAll(t)
			tr := newSMTP(t, tt.url, tt.opts)
			_, err := tr.Send(context.Background(), compose(t, draft("tls")))
			if tt.ok {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				tt.mp.WaitForMessages(t, 1)
				return
			}
			if !mail.IsTemporary(err) {
				t.Fatalf("got %v, want a temporary error", err)
			}
			if n := len(tt.mp.Messages(t)); n != 0 {
				t.Errorf("Mailpit holds %d messages", n)
			}
		})
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func TestNewSMTPRefusesBadURLs(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://mail.example.com", "scheme"},
		{"smtp://", "no host"},
		{"smtp://mail.example.com:0", "port"},
		{"smtp://mail.example.com:99999", "port"},
		{"smtp://user@mail.example.com", "both a user and a password"},
		{"smtp://mail.example.com?starttls=maybe", "starttls"},
		{"smtps://mail.example.com?starttls=required", "starttls is for smtp://"},
		{"smtp://mail.example.com?auth=cram", "auth"},
		{"smtp://mail.example.com?tls=1", "unknown parameter"},
		{"smtp://mail.example.com/path", "path"},
		{"smtp://u:hunter2-secret@mail example.com", "cannot be parsed"},
	}
	for _, tt := range tests {
		_, err := mail.NewSMTP(tt.url, mail.SMTPOptions{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewSMTP(%q) = %v, want an error with %q", tt.url, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewSMTP(%q) error shows the password: %v", tt.url, err)
		}
	}
	if _, err := mail.NewSMTP("smtps://mail.example.com", mail.SMTPOptions{InsecureSkipVerify: true}); err == nil {
		t.Error("InsecureSkipVerify accepted for a remote host")
	}

	descs := map[string]string{
		"smtp://u:hunter2@mail.example.com":         "smtp://u@mail.example.com:587?starttls=required",
		"smtp://mail.example.com:25":                "smtp://mail.example.com:25?starttls=opportunistic",
		"smtps://u:hunter2@mail.example.com":        "smtps://u@mail.example.com:465",
		"smtp://mail.example.com:2525?starttls=off": "smtp://mail.example.com:2525?starttls=off",
	}
	for in, want := range descs {
		tr, err := mail.NewSMTP(in, mail.SMTPOptions{})
		if err != nil {
			t.Errorf("NewSMTP(%q): %v", in, err)
			continue
		}
		if tr.String() != want {
			t.Errorf("NewSMTP(%q).String() = %q, want %q", in, tr.String(), want)
		}
	}
}

func TestSMTPClosedAndCancelled(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	tr := newSMTP(t, "smtp://"+mp.SMTPAddr, mail.SMTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Send(ctx, compose(t, draft("cancelled"))); !mail.IsTemporary(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v", err)
	}
	if _, err := tr.Send(context.Background(), compose(t, draft("open"))); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := tr.Send(context.Background(), compose(t, draft("closed"))); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Send after Close = %v", err)
	}
	if n := len(mp.Messages(t)); n != 1 {
		t.Errorf("Mailpit holds %d messages, want 1", n)
	}
}
