package api

import (
	"errors"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/stdwebhook"
)

// signedHook receives one provider's webhooks, signed with the Standard
// Webhooks scheme (Replicate's directly, Resend's through Svix), on the
// public listener: the signature, not a token, authenticates them.
//
// The endpoint is public and must read before it can verify. What can be
// checked without the body is checked first; then at most cap(bodies)
// bodies are read at once (a genuine delivery refused with 503 is
// delivered again), each bounded by what a genuine delivery holds.
// Refusals are logged at about one a second, so a flood fills neither
// memory nor the log.
type signedHook struct {
	s        *Server
	provider string
	// secrets verify deliveries; nil when no secret is configured or the
	// configured one is malformed (every delivery is then refused).
	secrets  []stdwebhook.Secret
	bodies   chan struct{}
	refusals *rate.Limiter
}

func newSignedHook(s *Server, provider, secret string, maxBodies int) *signedHook {
	h := &signedHook{s: s, provider: provider, bodies: make(chan struct{}, maxBodies), refusals: rate.NewLimiter(1, 5)}
	if secret != "" {
		sec, err := stdwebhook.ParseSecret(secret)
		if err != nil {
			s.log.Error("webhooks are refused", "provider", provider, "reason", err.Error())
		} else {
			h.secrets = []stdwebhook.Secret{sec}
		}
	}
	return h
}

// configured reports whether deliveries can be verified.
func (h *signedHook) configured() bool { return h.secrets != nil }

// serve verifies the delivery, its body read up to limit bytes exactly as
// received, and hands the body to handle; otherwise it answers.
func (h *signedHook) serve(c *gin.Context, limit int64, handle func(body []byte)) {
	id := c.GetHeader(stdwebhook.HeaderID)
	ts := c.GetHeader(stdwebhook.HeaderTimestamp)
	sig := c.GetHeader(stdwebhook.HeaderSignature)
	if err := stdwebhook.CheckHeaders(id, ts, sig, h.s.now(), 0); err != nil {
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
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		bodyError(c, err, mailslot.CodeInvalidBody)
		return
	}
	if err := stdwebhook.Verify(h.secrets, id, ts, sig, body, h.s.now(), 0); err != nil {
		h.refuse(c, err)
		return
	}
	handle(body)
}

// refuse answers a delivery whose signature does not hold, alike for
// every reason, so that a forger learns nothing.
func (h *signedHook) refuse(c *gin.Context, err error) {
	if h.refusals.Allow() {
		h.s.log.Info("webhook refused", "provider", h.provider, "reason", err.Error())
	}
	abortError(c, mailslot.CodeInvalidSignature, nil)
}

// bodyError answers a body that could not be read: too large, or code.
func bodyError(c *gin.Context, err error, code string) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return
	}
	abortError(c, code, nil)
}
