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

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/logging"
)

// ImageJobs is what the image endpoints need from image jobs, which live
// in Postgres, not in the outbox. The node fills it in (sync/images.Jobs
// on a small pool the node opens without connecting, and closes), so that
// the HTTP layer owns no pool, imports nothing of sync, and an edge
// starts, and its other endpoints answer, while Postgres is down. Errors
// are the vocabulary's: *mailslot.FieldError, mailslot.ErrLeadNotFound,
// ErrUploadStoreFull, ErrImageJobNotFound, ErrInvalidPrediction.
type ImageJobs interface {
	// Submit checks sub against the configured limits and queues it.
	Submit(ctx context.Context, sub mailslot.ImageSubmission) (mailslot.ImageJob, error)
	Get(ctx context.Context, id int64) (mailslot.ImageJob, error)
	// ApplyReplicate applies a verified Replicate webhook body: known is
	// false when no stored prediction has its id, changed false when it
	// was already final.
	ApplyReplicate(ctx context.Context, body []byte) (known, changed bool, err error)
}

// imageAPI serves image descriptions for one Server: the operator's
// POST /admin/images and GET /admin/images/:id, and Replicate's webhook.
type imageAPI struct {
	s    *Server
	im   ImageSettings
	hook *signedHook
	// store is nil when this edge has no Postgres.
	store ImageJobs
}

// newImageAPI prepares the image endpoints over jobs (nil without Postgres).
func newImageAPI(s *Server, jobs ImageJobs) *imageAPI {
	return &imageAPI{s: s, im: s.set.Images, store: jobs,
		hook: newSignedHook(s, "replicate", s.set.Images.WebhookSecret, maxWebhookBodies)}
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
	sub := mailslot.ImageSubmission{SubmittedBy: "admin_api", MaxAttempts: a.im.MaxAttempts}
	switch {
	case ct == "application/json":
		var req struct {
			URL    string `json:"url"`
			LeadID *int64 `json:"lead_id"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxImageJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			bodyError(c, err, mailslot.CodeInvalidJSON)
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
			bodyError(c, err, mailslot.CodeInvalidBody)
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
	job, err := store.Submit(c.Request.Context(), sub)
	var inErr *mailslot.FieldError
	switch {
	case errors.As(err, &inErr):
		abortError(c, mailslot.CodeInvalidFields, map[string]string{inErr.Field: inErr.Code})
	case errors.Is(err, mailslot.ErrLeadNotFound):
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"lead_id": "not_found"})
	case errors.Is(err, mailslot.ErrUploadStoreFull):
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
	case errors.Is(err, mailslot.ErrImageJobNotFound):
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
	if !a.hook.configured() {
		abortError(c, mailslot.CodeWebhookNotConfigured, nil)
		return
	}
	// A genuine delivery holds the prediction, which echoes its input (an
	// upload's data URL), beside a small output.
	limit := min(maxImageWebhookBody, 2*a.im.MaxUploadBytes+1<<20)
	a.hook.serve(c, limit, func(body []byte) {
		store, ok := a.db(c)
		if !ok {
			return
		}
		known, changed, err := store.ApplyReplicate(c.Request.Context(), body)
		switch {
		case errors.Is(err, mailslot.ErrInvalidPrediction):
			abortError(c, mailslot.CodeInvalidPrediction, nil)
			return
		case err != nil:
			a.unavailable(c, "apply webhook", err)
			return
		}
		outcome := "applied"
		switch {
		case !known:
			outcome = "unknown"
		case !changed:
			outcome = "duplicate"
		}
		c.JSON(http.StatusOK, gin.H{"status": outcome})
	})
}

// maxImageWebhookBody bounds a Replicate webhook's body: a prediction with
// its input and output, as much as the provider client itself reads.
const maxImageWebhookBody = 8 << 20

// maxWebhookBodies bounds the webhook bodies held in memory at once: with
// maxImageWebhookBody each, a few fit beside the edge's own working set in a
// 256 MB VM, and Replicate delivers far fewer at once.
const maxWebhookBodies = 4
