package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/images"
	"github.com/mailslot/mailslot/sync/mailer"
)

// ESP feedback: Resend's bounce and complaint webhooks.
//
// Resend signs its webhooks with Svix, the Standard Webhooks scheme that
// Replicate uses too, so the image webhook's verifier serves both. A hard
// bounce or a complaint withdraws the address on the message's property
// and suppresses it, exactly as an unsubscribe does, and it takes the
// unsubscribe's path: a consent change written to this edge's outbox
// (fsynced before Resend hears 200) that the sync applies under the
// address's exclusive lock, with its consent record as proof, the
// suppression, and the cancellation of queued mail. Applying it in
// Postgres directly would need a second copy of that logic and its
// ordering against sign-ups; through the outbox, a bounce arriving while
// Postgres is briefly unreachable is still kept. What the webhook needs
// from Postgres is only which job the email id names (for the property and
// the address hash): without Postgres it answers 503, and Resend delivers
// again later.

// maxResendWebhookBody bounds a Resend event: a few hundred bytes of JSON
// with the message's headers and tags at most.
const maxResendWebhookBody = 64 << 10

type mailHooks struct {
	s        *Server
	key      []byte
	bodies   chan struct{}
	refusals *rate.Limiter
}

// mailRoutes registers the ESP webhook on the public listener: Resend must
// reach it, and its signature, not a token, authenticates it.
func (s *Server) mailRoutes(e *gin.Engine) {
	h := &mailHooks{s: s, bodies: make(chan struct{}, 2), refusals: rate.NewLimiter(1, 5)}
	if secret := s.cfg.Mail.ResendWebhookSecret; secret != "" {
		key, err := images.WebhookKey(secret)
		if err != nil {
			s.log.Error("Resend webhooks are refused", "reason", err.Error())
		}
		h.key = key
	}
	e.POST("/v1/webhooks/resend", h.resend)
}

func (h *mailHooks) refuse(c *gin.Context, err error) {
	if h.refusals.Allow() {
		h.s.log.Info("resend webhook refused", "reason", err.Error())
	}
	abortError(c, mailslot.CodeInvalidSignature, nil)
}

func (h *mailHooks) resend(c *gin.Context) {
	if h.key == nil || h.s.cfg.DatabaseURL == "" {
		abortError(c, mailslot.CodeWebhookNotConfigured, nil)
		return
	}
	// Headers first: a forged post without them costs no body read.
	if err := images.CheckWebhookHeaders(c.Request.Header, h.s.now()); err != nil {
		h.refuse(c, err)
		return
	}
	select {
	case h.bodies <- struct{}{}:
		defer func() { <-h.bodies }()
	default:
		c.Header("Retry-After", "1")
		abortError(c, mailslot.CodeBusy, nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxResendWebhookBody))
	if err != nil {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return
	}
	if err := images.VerifyWebhook(h.key, c.Request.Header, body, h.s.now()); err != nil {
		h.refuse(c, err)
		return
	}
	fb, ok, err := mail.ParseResendFeedback(body)
	if err != nil {
		abortError(c, mailslot.CodeInvalidEvent, nil)
		return
	}
	if !ok || !fb.Permanent {
		// Deliveries, opens, transient bounces: nothing to withdraw.
		c.JSON(http.StatusOK, gin.H{"status": "ignored"})
		return
	}
	kind, source := "bounce", mailslot.SourceHardBounce
	if fb.Kind == mail.Complaint {
		kind, source = "complaint", mailslot.SourceComplaint
	}
	property, emailHMAC, known, err := h.lookup(c.Request.Context(), fb.EmailID, kind)
	if err != nil {
		h.s.log.Warn("resend webhook: Postgres unavailable", logging.KeyErr, err)
		c.Header("Retry-After", "60")
		abortError(c, mailslot.CodeUnavailable, nil)
		return
	}
	if !known {
		// Not ours, or erased with its lead: nothing left to withdraw.
		c.JSON(http.StatusOK, gin.H{"status": "unknown"})
		return
	}
	now := h.s.now().UTC()
	payload, _ := json.Marshal(mailslot.ConsentChange{Action: mailslot.ActionUnsubscribe, Property: property,
		Status: mailslot.ConsentWithdrawn, Source: source, RecordedAt: now})
	if _, err := h.s.out.Submit(c.Request.Context(), outbox.Submission{Records: []outbox.Record{{
		ID: uuid.Must(uuid.NewV7()).String(), Kind: mailslot.KindConsent, ReceivedAt: now,
		Payload: payload, EmailHMAC: emailHMAC,
	}}}); err != nil {
		h.s.failStore(c, intake.FormatJSON, err)
		return
	}
	h.s.log.Info("mail feedback withdrew an address", "feedback", kind)
	c.JSON(http.StatusOK, gin.H{"status": "withdrawn"})
}

// lookup records the feedback on its job and returns the job's property
// and address hash. Feedback is rare, so it takes one short connection
// rather than keeping a pool open on every edge.
func (h *mailHooks) lookup(ctx context.Context, emailID, kind string) (string, []byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(h.s.cfg.DatabaseURL)
	if err != nil {
		return "", nil, false, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return mailer.NewStore(conn).RecordFeedback(ctx, emailID, kind)
}
