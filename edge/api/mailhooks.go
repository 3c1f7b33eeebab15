package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/mail"
	"github.com/mailslot/mailslot/outbox"
)

// ESP feedback: Resend's bounce and complaint webhooks.
//
// Resend signs its webhooks with Svix, the Standard Webhooks scheme that
// Replicate uses too, so one verifier (signedHook) serves both. A hard
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

// MailFeedback is what the ESP webhook needs from Postgres: which mail job
// an ESP's email id names. The node fills it in (edge/mailfeedback.go),
// so that the HTTP layer opens no connection and imports nothing of sync.
type MailFeedback interface {
	// RecordFeedback records a bounce or a complaint ("bounce",
	// "complaint") on the job the email id names and returns the job's
	// property and address hash; known is false when no job has the id.
	RecordFeedback(ctx context.Context, emailID, kind string) (property string, emailHMAC []byte, known bool, err error)
}

type mailHooks struct {
	s    *Server
	hook *signedHook
}

// mailRoutes registers the ESP webhook on the public listener: Resend must
// reach it, and its signature, not a token, authenticates it.
func (s *Server) mailRoutes(e *gin.Engine) {
	h := &mailHooks{s: s, hook: newSignedHook(s, "resend", s.set.ResendWebhookSecret, 2)}
	e.POST("/v1/webhooks/resend", h.resend)
}

func (h *mailHooks) resend(c *gin.Context) {
	if !h.hook.configured() || h.s.mailFB == nil {
		abortError(c, mailslot.CodeWebhookNotConfigured, nil)
		return
	}
	h.hook.serve(c, maxResendWebhookBody, func(body []byte) { h.feedback(c, body) })
}

// feedback acts on a verified Resend event.
func (h *mailHooks) feedback(c *gin.Context, body []byte) {
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
	property, emailHMAC, known, err := h.s.mailFB.RecordFeedback(c.Request.Context(), fb.EmailID, kind)
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
