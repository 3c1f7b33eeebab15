package mail_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/mail/mailtest"
)

// TestComposedMessageOverSMTP sends composed messages through a real
// Mailpit and reads them back as a mail client would.
func TestComposedMessageOverSMTP(t *testing.T) {
	mp := mailtest.StartMailpit(t, mailtest.Options{})
	tr, err := mail.NewSMTP("smtp://"+mp.SMTPAddr, mail.SMTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()

	welcome := draft("job-43")
	welcome.Kind, welcome.ConfirmURL = mail.Welcome, ""
	tests := []struct {
		name        string
		d           mail.Draft
		subject     string
		messageID   string
		wantConfirm bool
	}{
		{"confirmation", draft("job-42"), "Please confirm your subscription to Café Zoë", "mailslot.confirmation.job-42@example.com", true},
		{"welcome", welcome, "Welcome to Café Zoë", "mailslot.welcome.job-43@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mp.DeleteAll(t)
			m := compose(t, tt.d)
			res, err := tr.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if res.ID != "<"+tt.messageID+">" {
				t.Errorf("Result.ID = %q", res.ID)
			}
			list := mp.WaitForMessages(t, 1)
			got := mp.Message(t, list[0].ID)

			if got.MessageID != tt.messageID {
				t.Errorf("Message-ID = %q, want %q", got.MessageID, tt.messageID)
			}
			if got.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", got.Subject, tt.subject)
			}
			if got.From == nil || got.From.Name != "Crème Brûlée Café" || got.From.Address != "news@example.com" {
				t.Errorf("From = %+v", got.From)
			}
			if len(got.To) != 1 || got.To[0].Name != "Zoë Ñandú" || got.To[0].Address != "zoe@example.org" {
				t.Errorf("To = %+v", got.To)
			}
			if got.ListUnsubscribe.Header != "<"+testUnsubURL+">" || got.ListUnsubscribe.HeaderPost != "List-Unsubscribe=One-Click" {
				t.Errorf("List-Unsubscribe = %+v", got.ListUnsubscribe)
			}
			if got.ListUnsubscribe.Errors != "" {
				t.Errorf("Mailpit finds the List-Unsubscribe header invalid: %s", got.ListUnsubscribe.Errors)
			}

			// Both parts carry the identification block and the link.
			for part, body := range map[string]string{"text": got.Text, "html": got.HTML} {
				for _, want := range []string{"Crème Brûlée Marketing Inc.", "100 Rue Saint-Paul", "Montréal QC H2Y 1Z3", "privacy@example.com"} {
					if !strings.Contains(body, want) {
						t.Errorf("%s part lacks %q", part, want)
					}
				}
				unsub, confirm := testUnsubURL, testConfirmURL
				if part == "html" {
					unsub, confirm = `href="`+testUnsubURL+`"`, `href="`+testConfirmURL+`"`
				}
				if !strings.Contains(body, unsub) {
					t.Errorf("%s part lacks the unsubscribe link", part)
				}
				if strings.Contains(body, confirm) != tt.wantConfirm {
					t.Errorf("%s part: confirm link present = %v, want %v", part, !tt.wantConfirm, tt.wantConfirm)
				}
			}

			// On the wire: multipart/alternative, text first, RFC 2047
			// encoded words for the non-ASCII names and subject.
			raw := mp.Raw(t, list[0].ID)
			head, _, _ := strings.Cut(raw, "\r\n\r\n")
			head = strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(head) // unfold
			for _, want := range []string{"multipart/alternative", "subject: =?utf-8?q?", "from: =?utf-8?q?", "to: =?utf-8?q?", "auto-submitted: auto-generated"} {
				if !strings.Contains(strings.ToLower(head), strings.ToLower(want)) {
					t.Errorf("header block lacks %q:\n%s", want, head)
				}
			}
			ti, hi := strings.Index(raw, "Content-Type: text/plain"), strings.Index(raw, "Content-Type: text/html")
			if ti < 0 || hi < 0 || ti > hi {
				t.Errorf("want a text/plain part before a text/html part (at %d and %d)", ti, hi)
			}
			h := mp.Headers(t, list[0].ID)
			if v := h["List-Unsubscribe-Post"]; len(v) != 1 || v[0] != "List-Unsubscribe=One-Click" {
				t.Errorf("List-Unsubscribe-Post header = %q", v)
			}
		})
	}
}

// TestMessageIDStablePerJob: every attempt of one job has the same
// Message-ID and idempotency key; another job has another.
func TestMessageIDStablePerJob(t *testing.T) {
	a, b, c := compose(t, draft("7001")), compose(t, draft("7001")), compose(t, draft("7002"))
	if a.MessageID != b.MessageID || a.IdempotencyKey != b.IdempotencyKey {
		t.Errorf("same job, different ids: %q/%q, %q/%q", a.MessageID, b.MessageID, a.IdempotencyKey, b.IdempotencyKey)
	}
	if a.MessageID == c.MessageID || a.IdempotencyKey == c.IdempotencyKey {
		t.Errorf("different jobs, same id %q", a.MessageID)
	}
	if a.MessageID != "<mailslot.confirmation.7001@example.com>" {
		t.Errorf("MessageID = %q", a.MessageID)
	}
}

func TestComposeRefusesBadDrafts(t *testing.T) {
	tests := []struct {
		name string
		edit func(*mail.Draft)
		want string
	}{
		{"unknown kind", func(d *mail.Draft) { d.Kind = "newsletter" }, "unknown message kind"},
		{"empty job id", func(d *mail.Draft) { d.JobID = "" }, "job id"},
		{"job id with specials", func(d *mail.Draft) { d.JobID = "1@2" }, "job id"},
		{"from without domain", func(d *mail.Draft) { d.From.Address = "news" }, "from address"},
		{"bad recipient", func(d *mail.Draft) { d.To.Address = "zoe@example.org>, x@y.z" }, "recipient's address"},
		{"name with newline", func(d *mail.Draft) { d.To.Name = "Zoë\r\nBcc: x@y.z" }, "line break"},
		{"no property", func(d *mail.Draft) { d.Property = " " }, "property"},
		{"no postal address", func(d *mail.Draft) { d.Sender.PostalAddress = "" }, "postal address"},
		{"http unsubscribe", func(d *mail.Draft) { d.UnsubscribeURL = "http://edge.example.com/u" }, "unsubscribe URL: use https"},
		{"relative unsubscribe", func(d *mail.Draft) { d.UnsubscribeURL = "/v1/unsubscribe" }, "unsubscribe URL"},
		{"unsubscribe with bracket", func(d *mail.Draft) { d.UnsubscribeURL = "https://e.example/u>x" }, "angle bracket"},
		{"confirmation without confirm URL", func(d *mail.Draft) { d.ConfirmURL = "" }, "confirm URL: missing"},
		{"welcome with confirm URL", func(d *mail.Draft) { d.Kind = mail.Welcome }, "carries no confirm URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := draft("1")
			tt.edit(&d)
			_, err := mail.Compose(d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compose = %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "zoe@example.org") {
				t.Errorf("error names the recipient: %v", err)
			}
		})
	}

	d := draft("1")
	d.UnsubscribeURL = "http://127.0.0.1:8080/v1/unsubscribe?token=x"
	if _, err := mail.Compose(d); err != nil {
		t.Errorf("http on loopback (development) refused: %v", err)
	}
}

func TestSenderValidate(t *testing.T) {
	tests := []struct {
		s    mail.Sender
		want []string
	}{
		{mail.Sender{}, []string{"sender name", "postal address", "contact"}},
		{mail.Sender{Name: "A", Contact: "https://a.example"}, []string{"postal address"}},
		{mail.Sender{Name: "A", PostalAddress: "1 Main St"}, []string{"contact"}},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if err == nil {
			t.Errorf("Validate(%+v) = nil", tt.s)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want it to name %q", tt.s, err, w)
			}
		}
	}
	if err := testSender.Validate(); err != nil {
		t.Errorf("complete sender: %v", err)
	}
}

func TestParseFrom(t *testing.T) {
	tests := []struct {
		in, name, addr string
		ok             bool
	}{
		{"Crème Café <news@example.com>", "Crème Café", "news@example.com", true},
		{`"Acme, Inc." <news@example.com>`, "Acme, Inc.", "news@example.com", true},
		{"=?UTF-8?q?Caf=C3=A9?= <news@example.com>", "Café", "news@example.com", true},
		{"news@example.com", "", "news@example.com", true},
		{"", "", "", false},
		{"Acme <news>", "", "", false},
		{"not an address", "", "", false},
	}
	for _, tt := range tests {
		a, err := mail.ParseFrom(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseFrom(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && (a.Name != tt.name || a.Address != tt.addr) {
			t.Errorf("ParseFrom(%q) = %+v", tt.in, a)
		}
	}
}

func TestClassOf(t *testing.T) {
	if mail.ClassOf(nil) != 0 {
		t.Error("ClassOf(nil) != 0")
	}
	if !mail.IsTemporary(errors.New("x")) {
		t.Error("a plain error is not temporary")
	}
	wrapped := errors.Join(errors.New("ctx"), &mail.SendError{Class: mail.Uncertain, Op: "end of data"})
	if !mail.IsUncertain(wrapped) {
		t.Error("a wrapped uncertain SendError is not uncertain")
	}
}
