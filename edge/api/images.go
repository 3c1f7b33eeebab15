package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/sync/images"
)

// ImageJobs is what the image endpoints need from image jobs, which live
// in Postgres, not in the outbox. The node fills it in (an images.Store on
// a small pool the node opens without connecting, and closes), so that the
// HTTP layer owns no pool and an edge starts, and its other endpoints
// answer, while Postgres is down.
type ImageJobs interface {
	Submit(ctx context.Context, sub images.Submission, lim images.Limits) (images.Job, error)
	Get(ctx context.Context, id int64) (images.Job, error)
	ApplyPrediction(ctx context.Context, provider string, p images.Prediction, pricePerSecond float64) (images.Applied, error)
}

// imageAPI serves image descriptions for one Server: the operator's
// POST /admin/images and GET /admin/images/:id, and Replicate's webhook.
type imageAPI struct {
	s      *Server
	im     config.Images
	limits images.Limits
	// key verifies webhooks; nil when no signing secret is configured.
	key []byte
	// bodies bounds the webhook bodies read at once; refusals logs refused
	// deliveries at a bounded rate, so a flood fills neither memory nor
	// the log.
	bodies   chan struct{}
	refusals *rate.Limiter
	// store is nil when this edge has no Postgres.
	store ImageJobs
}

// newImageAPI prepares the image endpoints over jobs (nil without Postgres).
func newImageAPI(s *Server, jobs ImageJobs) *imageAPI {
	a := &imageAPI{s: s, im: s.cfg.Images, limits: images.LimitsFromConfig(s.cfg.Images), store: jobs,
		bodies: make(chan struct{}, maxWebhookBodies), refusals: rate.NewLimiter(1, 5)}
	if a.im.WebhookSecret != "" {
		key, err := images.WebhookKey(a.im.WebhookSecret)
		if err != nil {
			s.log.Error("Replicate webhooks are refused", "reason", err.Error())
		}
		a.key = key
	}
	return a
}

func (s *Server) images() *imageAPI { return s.imgs }

// imageRoutes registers the operator's image endpoints in the admin group.
func (s *Server) imageRoutes(g *gin.RouterGroup) {
	a := s.images()
	g.POST("/images", a.submit)
	g.GET("/images/:id", a.get)
}

// replicateWebhook receives Replicate's prediction webhooks. It belongs on
// the public listener (Replicate must reach it) outside the admin group:
// the signature, not a token, authenticates it.
func (s *Server) replicateWebhook(c *gin.Context) { s.images().webhook(c) }

// db returns the store, or answers 503 when this edge has no Postgres.
func (a *imageAPI) db(c *gin.Context) (ImageJobs, bool) {
	if a.store == nil {
		c.Header("Retry-After", "60")
		abortError(c, mailslot.CodeImagesUnavailable, nil)
		return nil, false
	}
	return a.store, true
}

// maxImageJSON bounds a JSON submission (a URL and a lead id).
const maxImageJSON = 16 << 10

// submit queues a job: JSON {"url": "https://…", "lead_id": 42} for an
// image on an allowlisted host, or the image itself as the body (Content-
// Type image/jpeg, image/png, image/gif or image/webp; ?lead_id=42).
func (a *imageAPI) submit(c *gin.Context) {
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	sub := images.Submission{SubmittedBy: "admin_api", MaxAttempts: a.im.MaxAttempts}
	switch {
	case ct == "application/json":
		var req struct {
			URL    string `json:"url"`
			LeadID *int64 `json:"lead_id"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxImageJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			a.bodyError(c, err, mailslot.CodeInvalidJSON)
			return
		}
		if req.URL == "" {
			abortError(c, mailslot.CodeInvalidFields, map[string]string{"url": "required"})
			return
		}
		sub.URL, sub.LeadID = req.URL, req.LeadID
	case strings.HasPrefix(ct, "image/"):
		if v := c.Query("lead_id"); v != "" {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil || id <= 0 {
				abortError(c, mailslot.CodeInvalidFields, map[string]string{"lead_id": "invalid"})
				return
			}
			sub.LeadID = &id
		}
		data, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, a.im.MaxUploadBytes))
		if err != nil {
			a.bodyError(c, err, mailslot.CodeInvalidBody)
			return
		}
		sub.Image = data
	default:
		abortError(c, mailslot.CodeUnsupportedMediaType, nil)
		return
	}
	store, ok := a.db(c)
	if !ok {
		return
	}
	job, err := store.Submit(c.Request.Context(), sub, a.limits)
	var inErr *images.InputError
	switch {
	case errors.As(err, &inErr):
		abortError(c, mailslot.CodeInvalidFields, map[string]string{inErr.Field: inErr.Code})
	case errors.Is(err, images.ErrLeadNotFound):
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"lead_id": "not_found"})
	case errors.Is(err, images.ErrUploadStoreFull):
		// Uploads are released as their jobs finish; until then there is
		// no room, whoever asks.
		abortError(c, mailslot.CodeUploadStorageFull, nil)
	case err != nil:
		a.unavailable(c, "submit image job", err)
	default:
		c.Header("Location", "/admin/images/"+strconv.FormatInt(job.ID, 10))
		c.JSON(http.StatusCreated, job)
	}
}

func (a *imageAPI) bodyError(c *gin.Context, err error, code string) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return
	}
	abortError(c, code, nil)
}

// unavailable answers a Postgres failure: the job was not stored, and
// trying again later is the fix.
func (a *imageAPI) unavailable(c *gin.Context, what string, err error) {
	a.s.log.Warn(what, logging.KeyErr, err)
	c.Header("Retry-After", "5")
	abortError(c, mailslot.CodeUnavailable, nil)
}

func (a *imageAPI) get(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		abortError(c, mailslot.CodeNotFound, nil)
		return
	}
	store, ok := a.db(c)
	if !ok {
		return
	}
	job, err := store.Get(c.Request.Context(), id)
	switch {
	case errors.Is(err, images.ErrNotFound):
		abortError(c, mailslot.CodeNotFound, nil)
	case err != nil:
		a.unavailable(c, "read image job", err)
	default:
		c.JSON(http.StatusOK, job)
	}
}

// webhook applies a prediction Replicate posts. The body is verified
// exactly as received before it is parsed. Deliveries are idempotent: a
// repeated one (Replicate retries, keeping the webhook-id) or one racing
// the dispatcher's poll finds the prediction final and changes nothing,
// and the spend is recorded once per prediction. A prediction of an erased
// lead's job is acknowledged and stores nothing but its spend. Only a
// Postgres failure answers 5xx, so that Replicate delivers again.
func (a *imageAPI) webhook(c *gin.Context) {
	if a.key == nil {
		abortError(c, mailslot.CodeWebhookNotConfigured, nil)
		return
	}
	// The endpoint is public and must read before it can verify. What can
	// be checked without the body is checked first; then at most
	// maxWebhookBodies bodies are read at once (a genuine Replicate
	// delivery refused with 503 is delivered again), each bounded by what
	// a genuine delivery holds (the prediction echoes its input, an
	// upload's data URL, beside a small output).
	if err := images.CheckWebhookHeaders(c.Request.Header, a.s.now()); err != nil {
		a.refuse(c, err)
		return
	}
	select {
	case a.bodies <- struct{}{}:
		defer func() { <-a.bodies }()
	default:
		c.Header("Retry-After", "1")
		abortError(c, mailslot.CodeBusy, nil)
		return
	}
	limit := min(images.MaxWebhookBody, 2*a.im.MaxUploadBytes+1<<20)
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		a.bodyError(c, err, mailslot.CodeInvalidBody)
		return
	}
	if err := images.VerifyWebhook(a.key, c.Request.Header, body, a.s.now()); err != nil {
		a.refuse(c, err)
		return
	}
	p, err := images.ParseReplicatePrediction(body)
	if err != nil {
		abortError(c, mailslot.CodeInvalidPrediction, nil)
		return
	}
	store, ok := a.db(c)
	if !ok {
		return
	}
	res, err := store.ApplyPrediction(c.Request.Context(), "replicate", p, a.im.PricePerSecond)
	if err != nil {
		a.unavailable(c, "apply webhook", err)
		return
	}
	outcome := "applied"
	switch {
	case !res.Known:
		outcome = "unknown"
	case !res.Changed:
		outcome = "duplicate"
	}
	c.JSON(http.StatusOK, gin.H{"status": outcome})
}

// maxWebhookBodies bounds the webhook bodies held in memory at once: with
// MaxWebhookBody each, a few fit beside the edge's own working set in a
// 256 MB VM, and Replicate delivers far fewer at once.
const maxWebhookBodies = 4

// refuse answers a webhook whose signature does not hold, logging at
// most about one refusal a second.
func (a *imageAPI) refuse(c *gin.Context, err error) {
	if a.refusals.Allow() {
		a.s.log.Info("webhook refused", "reason", err.Error())
	}
	abortError(c, mailslot.CodeInvalidSignature, nil)
}
