package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/edge/ratelimit"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/web"
)

// leadAccepted is the JSON answer to a stored sign-up.
type leadAccepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// request is what every write handler works out first.
type request struct {
	format intake.Format
	body   []byte
	ipHMAC []byte
	now    time.Time
}

// begin checks the content type, the rate limit and the body size, in that
// order, and reads the body. It answers and returns false on failure.
func (s *Server) begin(c *gin.Context, allowed ...intake.Format) (request, bool) {
	r := request{format: intake.FormatOf(c.GetHeader("Content-Type")), now: s.now().UTC()}
	ok := false
	for _, f := range allowed {
		ok = ok || f == r.format
	}
	if !ok {
		f := r.format
		if f == intake.FormatUnknown && formLike(c.GetHeader("Content-Type")) {
			f = intake.FormatForm
		}
		s.fail(c, f, mailslot.CodeUnsupportedMediaType, nil)
		return r, false
	}
	ip := s.clientIP(c)
	r.ipHMAC = s.hash.IP(ip)
	if ok, wait := s.allow(ip, r.ipHMAC, r.now); !ok {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		s.fail(c, r.format, mailslot.CodeRateLimited, nil)
		return r, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.set.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(c, r.format, mailslot.CodeBodyTooLarge, nil)
			return r, false
		}
		// The client went away or sent a broken body; nothing was stored.
		s.fail(c, r.format, mailslot.CodeInvalidBody, nil)
		return r, false
	}
	r.body = body
	return r, true
}

// formLike reports whether a content type we do not take still comes from
// an HTML form (multipart/form-data, or a urlencoded body in another
// charset). A browser shows whatever we answer, so such a post gets the
// error redirect like any form, never a JSON body.
func formLike(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "multipart/form-data" || mt == "application/x-www-form-urlencoded")
}

// allow takes a token from the client's bucket. An IPv4 client is its
// address (ipHMAC, the hash stored with its submissions); an IPv6 client
// is its /64 (MAILSLOT_RATE_V6_PREFIX), since one host is handed a whole
// prefix and could otherwise take a fresh bucket per address.
func (s *Server) allow(ip string, ipHMAC []byte, now time.Time) (bool, time.Duration) {
	key := ipHMAC
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
		key = s.hash.IP(ratelimit.ClientKey(a, s.set.RateV6PrefixBits))
	}
	return s.limiter.Allow(string(key[:16]), now)
}

// clientIP is the socket's peer, or the configured platform header when the
// edge runs behind a proxy that sets it. X-Forwarded-For is never read: any
// client can write it.
func (s *Server) clientIP(c *gin.Context) string {
	if h := s.set.ClientIPHeader; h != "" {
		if a, err := netip.ParseAddr(strings.TrimSpace(c.GetHeader(h))); err == nil {
			return a.Unmap().String()
		}
	}
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		host = c.Request.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}

func (s *Server) postLead(c *gin.Context) {
	r, ok := s.begin(c, intake.FormatJSON, intake.FormatForm)
	if !ok {
		return
	}
	req, err := intake.DecodeLead(r.format, r.body)
	if req.Bot {
		// Answer a filled honeypot exactly like a success so that bots learn
		// nothing; store nothing.
		s.succeedLead(c, r.format, req.Redirect, uuid.Must(uuid.NewV7()).String(), false)
		return
	}
	if err != nil {
		s.failIntake(c, r.format, err)
		return
	}
	if req.ImageURL != "" {
		u, err := mailslot.CheckImageURL(req.ImageURL, s.set.Images.AllowedHosts)
		if err != nil {
			code := intake.FieldInvalid
			var ie *mailslot.FieldError
			if errors.As(err, &ie) {
				code = ie.Code
			}
			s.fail(c, r.format, mailslot.CodeInvalidFields, map[string]string{"image_url": code})
			return
		}
		req.ImageURL = u
	}
	idemKey, ok := s.idempotencyKey(c, r.format, req.IdemKey)
	if !ok {
		return
	}
	ch, ok := s.checkChallenge(c, r, &req, idemKey)
	if !ok {
		return
	}
	leadJSON, err := json.Marshal(req.Lead)
	if err != nil {
		s.internalError(c, "encode lead", err)
		return
	}
	hash := sha256.Sum256(leadJSON)
	leadJSON = ch.stamp(leadJSON)
	id := uuid.Must(uuid.NewV7()).String()
	payload, err := mailslot.EncodePayload(leadJSON, mailslot.ConsentRecord{
		Property:      req.Property,
		PolicyVersion: req.PolicyVersion,
		Status:        req.Consent,
		Source:        req.Source,
		RecordedAt:    r.now,
		IPHMAC:        hex.EncodeToString(r.ipHMAC),
	})
	if err != nil {
		s.internalError(c, "encode lead payload", err)
		return
	}
	emailHMAC := s.hash.Email(req.Email)
	rc, err := s.out.Submit(c.Request.Context(), outbox.Submission{
		Records: []outbox.Record{{
			ID:         id,
			Kind:       mailslot.KindLead,
			ReceivedAt: r.now,
			Payload:    payload,
			EmailHMAC:  emailHMAC,
			IPHMAC:     r.ipHMAC,
		}},
		IdemKey:  idemKey,
		BodyHash: hash[:],
		Response: id,
	})
	if err != nil {
		s.failStore(c, r.format, err)
		return
	}
	if !rc.Replayed {
		s.metrics.Accepted(string(mailslot.KindLead), 1)
		s.challengeStored(ch, id, emailHMAC, req.Property)
	}
	s.succeedLead(c, r.format, req.Redirect, rc.Response, rc.Replayed)
}

func (s *Server) succeedLead(c *gin.Context, f intake.Format, redirect, id string, replayed bool) {
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	if f == intake.FormatForm {
		c.Redirect(http.StatusSeeOther, s.successURL(c, redirect))
		return
	}
	if !plainID(id) {
		c.JSON(http.StatusAccepted, leadAccepted{ID: id, Status: "accepted"})
		return
	}
	// What c.JSON writes for leadAccepted, without reflection.
	body := make([]byte, 0, 64)
	body = append(body, `{"id":"`...)
	body = append(body, id...)
	body = append(body, `","status":"accepted"}`...)
	c.Data(http.StatusAccepted, "application/json; charset=utf-8", body)
}

// plainID reports whether id needs no escaping in a JSON string: the ids
// the edge makes are UUIDs, but a replayed answer comes from the outbox
// file.
func plainID(id string) bool {
	for i := range len(id) {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// idempotencyKey takes the Idempotency-Key header, or the form/JSON field.
// Two different keys in one request are refused.
func (s *Server) idempotencyKey(c *gin.Context, f intake.Format, field string) (string, bool) {
	h := strings.TrimSpace(c.GetHeader("Idempotency-Key"))
	if h == "" {
		return field, true
	}
	if len(h) > 128 || strings.ContainsFunc(h, func(r rune) bool { return r < 0x21 || r > 0x7e }) || (field != "" && field != h) {
		s.fail(c, f, mailslot.CodeInvalidIdempotencyKey, nil)
		return "", false
	}
	return h, true
}

// eventsAccepted is the JSON answer to stored events.
type eventsAccepted struct {
	Status string `json:"status"`
	Count  int    `json:"count"`
}

func (s *Server) postEvents(c *gin.Context) {
	r, ok := s.begin(c, intake.FormatJSON, intake.FormatText)
	if !ok {
		return
	}
	events, err := intake.DecodeEvents(r.format, r.body, s.set.MaxEvents)
	if err != nil {
		s.failIntake(c, r.format, err)
		return
	}
	idemKey, ok := s.idempotencyKey(c, r.format, "")
	if !ok {
		return
	}
	sub := outbox.Submission{Records: make([]outbox.Record, len(events)), IdemKey: idemKey}
	h := sha256.New()
	for i, ev := range events {
		payload, err := json.Marshal(ev)
		if err != nil {
			s.internalError(c, "encode event", err)
			return
		}
		h.Write(payload)
		sub.Records[i] = outbox.Record{
			ID:         uuid.Must(uuid.NewV7()).String(),
			Kind:       mailslot.KindEvent,
			ReceivedAt: r.now,
			Payload:    payload,
			IPHMAC:     r.ipHMAC,
		}
	}
	sub.BodyHash = h.Sum(nil)
	sub.Response = strconv.Itoa(len(events))
	rc, err := s.out.Submit(c.Request.Context(), sub)
	if err != nil {
		s.failStore(c, r.format, err)
		return
	}
	if rc.Replayed {
		c.Header("Idempotent-Replayed", "true")
	} else {
		s.metrics.Accepted(string(mailslot.KindEvent), len(events))
	}
	if r.format == intake.FormatText {
		// sendBeacon never reads the answer.
		c.Status(http.StatusNoContent)
		return
	}
	c.JSON(http.StatusAccepted, eventsAccepted{Status: "accepted", Count: len(events)})
}

func (s *Server) failIntake(c *gin.Context, f intake.Format, err error) {
	e, ok := intake.AsError(err)
	if !ok {
		s.internalError(c, "decode request", err)
		return
	}
	s.fail(c, f, e.Code, e.Fields)
}

// failStore maps outbox errors. Only "cannot write" conditions are 5xx, and
// they come with Retry-After: the transaction was rolled back.
func (s *Server) failStore(c *gin.Context, f intake.Format, err error) {
	switch {
	case errors.Is(err, outbox.ErrIdempotencyConflict):
		s.fail(c, f, mailslot.CodeIdempotencyKeyReused, nil)
	case errors.Is(err, outbox.ErrFull), errors.Is(err, outbox.ErrClosed):
		c.Header("Retry-After", "5")
		s.fail(c, f, mailslot.CodeUnavailable, nil)
	case errors.Is(err, outbox.ErrStorage):
		// The writer logged the failed batch once for all its requests.
		c.Header("Retry-After", "5")
		s.fail(c, f, mailslot.CodeUnavailable, nil)
	case c.Request.Context().Err() != nil:
		// The client left before the commit; it may retry with its key.
		c.Abort()
	default:
		s.internalError(c, "store submission", err)
	}
}

// successURL is redirect when it is an absolute http(s) URL on an
// allowlisted host, else the configured thank-you page: never an open
// redirect, and never from https down to http (a form served over https
// must not send its visitor on to a page anyone on the path can rewrite).
func (s *Server) successURL(c *gin.Context, redirect string) string {
	if redirect != "" {
		u, err := url.Parse(redirect)
		if err == nil && (u.Scheme == "https" || u.Scheme == "http" && !s.overHTTPS(c)) && u.User == nil &&
			u.Host != "" && s.redir[strings.ToLower(u.Host)] {
			return u.String()
		}
	}
	return s.set.ThanksURL
}

// overHTTPS reports whether the client reached the edge over TLS: directly,
// or through the trusted proxy (the one whose client-IP header is
// configured, Fly's on Fly), which says so in X-Forwarded-Proto.
func (s *Server) overHTTPS(c *gin.Context) bool {
	if c.Request.TLS != nil {
		return true
	}
	return s.set.ClientIPHeader != "" && strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https")
}

func withQuery(base string, q url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	merged := u.Query()
	for k, v := range q {
		merged[k] = v
	}
	u.RawQuery = merged.Encode()
	return u.String()
}

// script serves the client script with a short shared cache lifetime, so
// a fix reaches every site within the hour.
func (s *Server) script(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=3600, stale-while-revalidate=86400")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Cross-Origin-Resource-Policy", "cross-origin")
	c.Data(http.StatusOK, "text/javascript; charset=utf-8", web.Script)
}

var thanksPage = template.Must(template.New("thanks").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{if .Error}}Something went wrong{{else}}Thank you{{end}}</title>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
{{if .Error}}<h1>We could not take your sign-up</h1><p>Reason: <code>{{.Error}}</code>{{if .Field}} (field <code>{{.Field}}</code>){{end}}.</p><p>Please go back and try again.</p>
{{else}}<h1>Thank you</h1><p>Your sign-up has been received.</p>{{end}}
</body></html>
`))

// thanks is the built-in landing page for form posts when no thank-you or
// error URL is configured.
func (s *Server) thanks(c *gin.Context) {
	data := struct{ Error, Field string }{c.Query("error"), c.Query("field")}
	if len(data.Error) > 64 || len(data.Field) > 64 {
		data.Error, data.Field = "invalid", ""
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	_ = thanksPage.Execute(c.Writer, data)
}
