package mailer

import (
	"errors"
	"log/slog"

	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/internal/token"
)

// FromConfig builds the dispatcher an edge runs. The node calls it only
// when DATABASE_URL is set and a transport is configured; an edge without
// one sends nothing (another edge may).
func FromConfig(cfg *config.Config, tokens *token.Keys, log *slog.Logger) (*Dispatcher, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("mail dispatcher: DATABASE_URL is not set")
	}
	if tokens == nil {
		return nil, errors.New("mail dispatcher: no token keys")
	}
	from, err := mail.ParseFrom(cfg.Mail.From)
	if err != nil {
		return nil, err
	}
	tr, err := TransportFromConfig(cfg.Mail)
	if err != nil {
		return nil, err
	}
	return New(Options{
		DatabaseURL:    cfg.DatabaseURL,
		Transport:      tr,
		TransportName:  cfg.Mail.Transport(),
		From:           from,
		Sender:         cfg.Mail.Sender,
		Tokens:         tokens,
		PublicURL:      cfg.PublicURL,
		ConfirmTTL:     cfg.ConfirmTTL,
		UnsubscribeTTL: cfg.UnsubscribeTTL,
		Owner:          cfg.NodeID,
		MaxAttempts:    cfg.Mail.MaxAttempts,
		MinBackoff:     cfg.Mail.MinBackoff,
		MaxBackoff:     cfg.Mail.MaxBackoff,
		MaxAge:         cfg.Mail.MaxAge,
		Interval:       cfg.Mail.Interval,
		Logger:         log,
	})
}

// TransportFromConfig builds the configured transport.
func TransportFromConfig(m config.Mail) (mail.Transport, error) {
	switch m.Transport() {
	case config.MailTransportSMTP:
		return mail.NewSMTP(m.SMTPURL, mail.SMTPOptions{})
	case config.MailTransportResend:
		return mail.NewResend(m.ResendAPIKey, mail.ResendOptions{BaseURL: m.ResendBaseURL})
	}
	return nil, errors.New("no mail transport is configured: set MAILSLOT_SMTP_URL or MAILSLOT_RESEND_API_KEY")
}
