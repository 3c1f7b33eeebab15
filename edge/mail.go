package edge

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/mailer"
)

// openMail starts the mail dispatcher (sync/mailer) when this edge has
// Postgres and a transport: jobs are leased in Postgres, so every edge
// with a transport may send, and none sends in a request's path.
func (n *Node) openMail(cfg *config.Config, tokens *token.Keys, log *slog.Logger) error {
	if cfg.DatabaseURL == "" || cfg.Mail.Transport() == config.MailTransportNone {
		return nil
	}
	d, err := mailer.FromConfig(cfg, tokens, log.With("worker", "mail"))
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	n.Mail = d
	n.onRelease(func() error { d.Close(); return nil })
	n.AddWorker(d)
	n.Metrics.AddSource(d.Samples)
	return nil
}

// mailStatus is the mail part of /v1/sync/status, nil without a
// dispatcher.
func (n *Node) mailStatus(ctx context.Context) *mailer.Status {
	if n.Mail == nil {
		return nil
	}
	st, err := n.Mail.Status(ctx)
	if err != nil {
		return &mailer.Status{Transport: n.cfg.Mail.Transport(), State: "unknown", LastError: err.Error()}
	}
	return &st
}
