package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/mailslot/mailslot/internal/mail"
)

// Mail transports.
const (
	MailTransportNone   = ""
	MailTransportSMTP   = "smtp"
	MailTransportResend = "resend"
)

// Mail configures the confirmation and welcome mail that the edge's
// dispatcher sends (sync/mailer). The SMTP URL, the API key and the
// webhook secret are secrets: nothing logs this struct.
type Mail struct {
	// SMTPURL is MAILSLOT_SMTP_URL (internal/mail.NewSMTP reads it);
	// ResendAPIKey is MAILSLOT_RESEND_API_KEY. At most one is set; neither
	// means this edge sends no mail.
	SMTPURL      string
	ResendAPIKey string
	// ResendBaseURL is Resend's API root (tests point it at a fake).
	ResendBaseURL string
	// ResendWebhookSecret verifies Resend's bounce and complaint webhooks
	// ("whsec_…", MAILSLOT_RESEND_WEBHOOK_SECRET).
	ResendWebhookSecret string
	// From is MAILSLOT_MAIL_FROM, "Name <address>".
	From string
	// Sender is the fleet's CASL sender identification
	// (MAILSLOT_SENDER_NAME, _ADDRESS, _CONTACT); properties may override
	// it in Postgres.
	Sender mail.Sender

	// MaxAttempts is how many times a job is tried before it is dead;
	// MinBackoff doubles per attempt, with jitter, up to MaxBackoff.
	MaxAttempts            int
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is how long a job may wait to be sent: a confirmation that
	// arrives days after the sign-up is skipped rather than sent.
	MaxAge time.Duration
	// Interval is how often an idle dispatcher looks for due jobs.
	Interval time.Duration
}

// Transport names the configured transport, or MailTransportNone.
func (m Mail) Transport() string {
	switch {
	case m.SMTPURL != "":
		return MailTransportSMTP
	case m.ResendAPIKey != "":
		return MailTransportResend
	}
	return MailTransportNone
}

// Development placeholders for what production must be given.
const (
	devMailFrom      = "mailslot (development) <mailslot@localhost>"
	devSenderName    = "mailslot development"
	devSenderAddress = "(development: set MAILSLOT_SENDER_ADDRESS)"
	devSenderContact = "mailslot@localhost"
)

// mail reads the mail variables. Production refuses a transport without a
// complete sender identification, because every message mailslot sends,
// the confirmation request included, is a commercial electronic message
// under CASL and unlawful without it; development fills placeholders so
// that `make run` sends to Mailpit out of the box.
func (p *parser) mail(env string) Mail {
	m := Mail{
		SMTPURL:             strings.TrimSpace(p.getenv("MAILSLOT_SMTP_URL")),
		ResendAPIKey:        strings.TrimSpace(p.getenv("MAILSLOT_RESEND_API_KEY")),
		ResendBaseURL:       strings.TrimSuffix(p.str("MAILSLOT_RESEND_URL", mail.DefaultResendBaseURL), "/"),
		ResendWebhookSecret: strings.TrimSpace(p.getenv("MAILSLOT_RESEND_WEBHOOK_SECRET")),
		From:                p.str("MAILSLOT_MAIL_FROM", ""),
		Sender: mail.Sender{
			Name:          p.str("MAILSLOT_SENDER_NAME", ""),
			PostalAddress: strings.ReplaceAll(p.str("MAILSLOT_SENDER_ADDRESS", ""), `\n`, "\n"),
			Contact:       p.str("MAILSLOT_SENDER_CONTACT", ""),
		},
		MaxAttempts: p.int("MAILSLOT_MAIL_MAX_ATTEMPTS", 10),
		MinBackoff:  p.duration("MAILSLOT_MAIL_MIN_BACKOFF", 30*time.Second),
		MaxBackoff:  p.duration("MAILSLOT_MAIL_MAX_BACKOFF", time.Hour),
		MaxAge:      p.duration("MAILSLOT_MAIL_MAX_AGE", 72*time.Hour),
		Interval:    p.duration("MAILSLOT_MAIL_INTERVAL", 250*time.Millisecond),
	}
	if m.SMTPURL != "" && m.ResendAPIKey != "" {
		p.fail("MAILSLOT_SMTP_URL", "and MAILSLOT_RESEND_API_KEY are both set: choose one transport")
	}
	if m.SMTPURL != "" {
		if _, err := mail.NewSMTP(m.SMTPURL, mail.SMTPOptions{}); err != nil {
			p.fail("MAILSLOT_SMTP_URL", "is not usable: "+err.Error())
		}
	}
	if m.ResendAPIKey != "" {
		if _, err := mail.NewResend(m.ResendAPIKey, mail.ResendOptions{BaseURL: m.ResendBaseURL}); err != nil {
			p.fail("MAILSLOT_RESEND_API_KEY", "is not usable: "+err.Error())
		}
		if env == Production && !strings.HasPrefix(m.ResendBaseURL, "https://") {
			p.fail("MAILSLOT_RESEND_URL", "must be an https URL in production")
		}
	}
	if m.ResendWebhookSecret != "" && !strings.HasPrefix(m.ResendWebhookSecret, "whsec_") {
		p.fail("MAILSLOT_RESEND_WEBHOOK_SECRET", "must be the whsec_… signing secret Resend shows for the webhook")
	}
	if m.MaxAttempts < 1 || m.MaxAttempts > 100 {
		p.fail("MAILSLOT_MAIL_MAX_ATTEMPTS", "must be between 1 and 100")
	}
	if m.MinBackoff <= 0 || m.MaxBackoff < m.MinBackoff {
		p.fail("MAILSLOT_MAIL_MIN_BACKOFF", "must be positive and at most MAILSLOT_MAIL_MAX_BACKOFF")
	}
	if m.MaxAge < time.Hour {
		p.fail("MAILSLOT_MAIL_MAX_AGE", "must be at least 1h")
	}
	if m.Interval < 10*time.Millisecond {
		p.fail("MAILSLOT_MAIL_INTERVAL", "must be at least 10ms")
	}
	if m.Transport() == MailTransportNone {
		return m
	}
	if env == Development {
		m.From = firstOf(m.From, devMailFrom)
		m.Sender.Name = firstOf(m.Sender.Name, devSenderName)
		m.Sender.PostalAddress = firstOf(m.Sender.PostalAddress, devSenderAddress)
		m.Sender.Contact = firstOf(m.Sender.Contact, devSenderContact)
	}
	if pub := strings.TrimSpace(p.getenv("MAILSLOT_PUBLIC_URL")); env == Production && !strings.HasPrefix(pub, "https://") {
		p.fail("MAILSLOT_PUBLIC_URL", "must be this service's public https URL when mail is sent: every message links to it")
	}
	if m.From == "" {
		p.fail("MAILSLOT_MAIL_FROM", `must be set when mail is sent, as in "Example News <news@example.com>"`)
	} else if _, err := mail.ParseFrom(m.From); err != nil {
		p.fail("MAILSLOT_MAIL_FROM", "is not usable: "+err.Error())
	}
	var missing []string
	for _, f := range []struct{ name, val string }{
		{"MAILSLOT_SENDER_NAME", m.Sender.Name},
		{"MAILSLOT_SENDER_ADDRESS (a postal address)", m.Sender.PostalAddress},
		{"MAILSLOT_SENDER_CONTACT (an email address, telephone number or web address)", m.Sender.Contact},
	} {
		if strings.TrimSpace(f.val) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		p.errs = append(p.errs, fmt.Errorf("mail is configured (%s) but the CASL sender identification every message must carry is incomplete: set %s",
			m.Transport(), strings.Join(missing, ", ")))
	} else if err := m.Sender.Validate(); err != nil {
		p.fail("MAILSLOT_SENDER_NAME", "and MAILSLOT_SENDER_CONTACT: "+err.Error())
	}
	return m
}
