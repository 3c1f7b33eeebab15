package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/outbox"
)

// Sources recorded on consent changes made through links.
const (
	sourceConfirmLink     = "confirm_link"
	sourceUnsubscribeLink = "unsubscribe_link"
	sourceOneClick        = "one_click"
)

// privacyRoutes registers the link endpoints. GET never changes anything:
// mail scanners fetch links, so every change needs a POST, which the page's
// button (or an RFC 8058 one-click client) sends.
func (s *Server) privacyRoutes(e *gin.Engine) {
	e.GET("/v1/confirm", s.linkPage(token.Confirm))
	e.POST("/v1/confirm", s.postLink(token.Confirm))
	e.GET("/v1/unsubscribe", s.linkPage(token.Unsubscribe))
	e.POST("/v1/unsubscribe", s.postLink(token.Unsubscribe))
	e.GET("/v1/erasure", s.linkPage(token.Erase))
	e.POST("/v1/erasure", s.postLink(token.Erase))
}

// privacyAdminRoutes registers the operator side: erasure by email, link
// minting and access requests.
func (s *Server) privacyAdminRoutes(g *gin.RouterGroup) {
	g.POST("/erasures", s.adminErase)
	g.POST("/links", s.adminLinks)
	g.POST("/export", s.adminExport)
}

var linkPages = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
{{if .Button}}<form method="post" action="{{.Action}}">
<button type="submit" style="font-size:1rem;padding:.6rem 1.2rem">{{.Button}}</button>
</form>{{end}}
</body></html>
`))

// page is a link page. Its form posts no fields: a press of its button
// is told apart from an RFC 8058 one-click post (which mail clients send
// with List-Unsubscribe=One-Click) and recorded as such.
type page struct {
	Title, Text, Button, Action string
}

var askPages = map[string]page{
	token.Confirm:     {Title: "Confirm your subscription", Text: "Press the button to confirm that you want to receive our emails.", Button: "Confirm"},
	token.Unsubscribe: {Title: "Unsubscribe", Text: "Press the button to stop receiving our emails.", Button: "Unsubscribe"},
	token.Erase:       {Title: "Delete my data", Text: "Press the button to delete everything we hold about your email address. This cannot be undone.", Button: "Delete my data"},
}

var donePages = map[string]page{
	token.Confirm:     {Title: "Subscription confirmed", Text: "Thank you. Your subscription is confirmed."},
	token.Unsubscribe: {Title: "You are unsubscribed", Text: "You will not receive our emails any more. It can take a moment to reach every system."},
	token.Erase:       {Title: "Your data is being deleted", Text: "We have recorded your request and are deleting everything we hold about your address."},
}

func (s *Server) renderPage(c *gin.Context, status int, p page) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Status(status)
	_ = linkPages.Execute(c.Writer, p)
}

// wantsJSON is true for API clients that ask for JSON.
func wantsJSON(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "application/json")
}

// verifyLink checks the token in the query; on failure it answers with a
// page (or JSON) that says what is wrong with the link.
func (s *Server) verifyLink(c *gin.Context, purpose string) (token.Claims, bool) {
	claims, err := s.tokens.Verify(c.Query("token"), purpose, s.now())
	if err == nil {
		return claims, true
	}
	code := mailslot.CodeInvalidToken
	switch {
	case errors.Is(err, token.ErrExpired):
		code = mailslot.CodeExpiredToken
	case errors.Is(err, token.ErrWrongPurpose):
		code = mailslot.CodeWrongPurpose
	}
	if wantsJSON(c) {
		abortError(c, code, nil)
		return claims, false
	}
	s.renderPage(c, errorStatus(code), page{Title: "This link does not work", Text: err.Error() + ". Please use the latest link we sent you, or contact us."})
	c.Abort()
	return claims, false
}

func (s *Server) linkPage(purpose string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, ok := s.verifyLink(c, purpose); !ok {
			return
		}
		p := askPages[purpose]
		p.Action = c.Request.URL.Path + "?token=" + url.QueryEscape(c.Query("token"))
		s.renderPage(c, http.StatusOK, p)
	}
}

// postLink carries out a link's action. The body may be empty (a plain
// button), or RFC 8058's "List-Unsubscribe=One-Click" form-encoded or as
// multipart/form-data; anything else is refused.
func (s *Server) postLink(purpose string) gin.HandlerFunc {
	return func(c *gin.Context) {
		now := s.now().UTC()
		ip := s.clientIP(c)
		ipHMAC := s.hash.IP(ip)
		if ok, _ := s.allow(ip, ipHMAC, now); !ok {
			c.Header("Retry-After", "10")
			abortError(c, mailslot.CodeRateLimited, nil)
			return
		}
		if purpose != token.Unsubscribe && crossSite(c, s.set.PublicURL) {
			// A page elsewhere that holds a link must not press its button
			// in a visitor's browser. Unsubscribing stays open to any
			// sender: RFC 8058 one-click posts come from mail providers,
			// and a withdrawal can only ever stop mail.
			if wantsJSON(c) {
				abortError(c, mailslot.CodeOriginNotAllowed, nil)
				return
			}
			s.renderPage(c, http.StatusForbidden, page{Title: "This link does not work here", Text: "Please open the link from your email and press the button on its page."})
			c.Abort()
			return
		}
		oneClick, ok := s.readLinkBody(c)
		if !ok {
			return
		}
		claims, ok := s.verifyLink(c, purpose)
		if !ok {
			return
		}
		var err error
		switch purpose {
		case token.Erase:
			_, err = s.erase(c, claims.EmailHMAC, now, "self_service")
		default:
			change := mailslot.ConsentChange{Action: mailslot.ActionConfirm, Property: claims.Property,
				Status: mailslot.ConsentExpress, Source: sourceConfirmLink, RecordedAt: now,
				TokenIssuedAt: tokenIssuedAt(claims, s.set.Links.Confirm)}
			if purpose == token.Unsubscribe {
				change.TokenIssuedAt = time.Time{}
				change.Action, change.Status, change.Source = mailslot.ActionUnsubscribe, mailslot.ConsentWithdrawn, sourceUnsubscribeLink
				if oneClick {
					change.Source = sourceOneClick
				}
			}
			payload, _ := json.Marshal(change)
			_, err = s.out.Submit(c.Request.Context(), outbox.Submission{Records: []outbox.Record{{
				ID: uuid.Must(uuid.NewV7()).String(), Kind: mailslot.KindConsent, ReceivedAt: now,
				Payload: payload, EmailHMAC: claims.EmailHMAC, IPHMAC: ipHMAC,
			}}})
		}
		if err != nil {
			s.failStore(c, intake.FormatJSON, err)
			return
		}
		if wantsJSON(c) || oneClick && c.GetHeader("Accept") == "" {
			c.JSON(http.StatusOK, gin.H{"status": "done"})
			return
		}
		s.renderPage(c, http.StatusOK, donePages[purpose])
	}
}

// tokenIssuedAt is when a confirm link's token was minted: sync applies a
// confirmation only when its link is newer than the lead's latest
// withdrawal. Tokens carry their issue time; links of the format before
// that were minted ttl (MAILSLOT_CONFIRM_LINK_TTL) before they expire,
// truncated to the second, so for them the expiry less the TTL is the
// issue time, at most a second early.
func tokenIssuedAt(c token.Claims, ttl time.Duration) time.Time {
	if !c.IssuedAt.IsZero() {
		return c.IssuedAt.UTC()
	}
	return c.Expires.Add(-ttl).UTC()
}

// crossSite reports whether a browser sent the request from a page on
// another site: Sec-Fetch-Site says so, or an Origin whose host is neither
// the edge's public host nor the host the request was sent to. Requests
// with neither header (mail clients, curl) pass. A browser's own
// Sec-Fetch-Site of same-origin (or none: typed or bookmarked) settles it
// before Origin is looked at, because the link pages are served with
// Referrer-Policy: no-referrer and Chromium then sends their button's
// post with Origin: null.
func crossSite(c *gin.Context, publicURL string) bool {
	switch c.GetHeader("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	case "same-origin", "none":
		return false
	}
	origin := c.GetHeader("Origin")
	if origin == "" {
		return false
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return true // "null": a sandboxed or opaque page
	}
	if o.Host == c.Request.Host {
		return false
	}
	u, err := url.Parse(publicURL)
	return err != nil || o.Scheme != u.Scheme || o.Host != u.Host
}

// readLinkBody accepts what a button or a one-click client sends and
// reports whether it was RFC 8058's one-click body.
func (s *Server) readLinkBody(c *gin.Context) (oneClick, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4<<10))
	if err != nil {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return false, false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return false, true
	}
	mt, params, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil {
		abortError(c, mailslot.CodeUnsupportedMediaType, nil)
		return false, false
	}
	var value string
	switch mt {
	case "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			abortError(c, mailslot.CodeInvalidForm, nil)
			return false, false
		}
		value = q.Get("List-Unsubscribe")
	case "multipart/form-data":
		r := multipartReader(body, params["boundary"])
		if r == nil {
			abortError(c, mailslot.CodeInvalidForm, nil)
			return false, false
		}
		form, err := r.ReadForm(4 << 10)
		if err != nil {
			abortError(c, mailslot.CodeInvalidForm, nil)
			return false, false
		}
		defer func() { _ = form.RemoveAll() }()
		if v := form.Value["List-Unsubscribe"]; len(v) > 0 {
			value = v[0]
		}
	default:
		abortError(c, mailslot.CodeUnsupportedMediaType, nil)
		return false, false
	}
	return value == "One-Click", true
}

// erase applies an erasure at this edge at once — its outbox rows of the
// address are scrubbed — and records the request for Postgres, in one
// transaction.
func (s *Server) erase(c *gin.Context, emailHMAC []byte, at time.Time, by string) (int64, error) {
	payload, _ := json.Marshal(mailslot.ErasureRequest{RequestedAt: at, RequestedBy: by})
	n, err := s.out.EraseAndRecord(c.Request.Context(), emailHMAC, outbox.Record{
		ID: uuid.Must(uuid.NewV7()).String(), Kind: mailslot.KindErasure, ReceivedAt: at,
		Payload: payload, EmailHMAC: emailHMAC,
	})
	if err == nil {
		s.log.Info("erasure recorded", "requested_by", by, "local_rows_scrubbed", n)
	}
	return n, err
}

// emailRequest is the body of the admin endpoints that name an address.
type emailRequest struct {
	Email    string `json:"email"`
	Property string `json:"property"`
}

// readEmail decodes {"email":…} and returns the normalized address.
func (s *Server) readEmail(c *gin.Context, needProperty bool) (emailRequest, bool) {
	var req emailRequest
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4<<10))
	if err != nil {
		abortError(c, mailslot.CodeBodyTooLarge, nil)
		return req, false
	}
	if intake.FormatOf(c.GetHeader("Content-Type")) != intake.FormatJSON {
		abortError(c, mailslot.CodeUnsupportedMediaType, nil)
		return req, false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		abortError(c, mailslot.CodeInvalidJSON, nil)
		return req, false
	}
	fields := map[string]string{}
	if req.Email, err = pii.NormalizeEmail(req.Email); err != nil {
		fields["email"] = intake.FieldInvalid
	}
	if needProperty && req.Property == "" {
		fields["property"] = intake.FieldRequired
	}
	if len(fields) > 0 {
		abortError(c, mailslot.CodeInvalidFields, fields)
		return req, false
	}
	return req, true
}

func (s *Server) adminErase(c *gin.Context) {
	req, ok := s.readEmail(c, false)
	if !ok {
		return
	}
	n, err := s.erase(c, s.hash.Email(req.Email), s.now().UTC(), "admin")
	if err != nil {
		s.failStore(c, intake.FormatJSON, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "local_rows_scrubbed": n})
}

// Links are the three signed links for an address on a property.
type Links struct {
	Confirm     string    `json:"confirm"`
	Unsubscribe string    `json:"unsubscribe"`
	Erase       string    `json:"erase"`
	Expires     LinkTimes `json:"expires"`
}

// LinkTimes says when each link stops working.
type LinkTimes struct {
	Confirm     time.Time `json:"confirm"`
	Unsubscribe time.Time `json:"unsubscribe"`
	Erase       time.Time `json:"erase"`
}

func (s *Server) adminLinks(c *gin.Context) {
	req, ok := s.readEmail(c, true)
	if !ok {
		return
	}
	property, code := intake.Ident(req.Property)
	if code != "" {
		abortError(c, mailslot.CodeInvalidFields, map[string]string{"property": code})
		return
	}
	// The links carry the property as sign-ups store it (trimmed), or a
	// confirmation would match no lead.
	req.Property = property
	if s.set.PublicURL == "" {
		abortError(c, mailslot.CodePublicURLNotConfigured, nil)
		return
	}
	ls := s.tokens.Links(s.set.PublicURL, req.Property, s.hash.Email(req.Email), s.set.Links, s.now())
	var l Links
	l.Confirm, l.Expires.Confirm = ls[0].URL, ls[0].Expires
	l.Unsubscribe, l.Expires.Unsubscribe = ls[1].URL, ls[1].Expires
	l.Erase, l.Expires.Erase = ls[2].URL, ls[2].Expires
	c.JSON(http.StatusOK, l)
}

// ExportedRow is one outbox row in an access request's answer.
type ExportedRow struct {
	NodeID     string          `json:"node_id"`
	Seq        int64           `json:"seq"`
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	ReceivedAt time.Time       `json:"received_at"`
	Payload    json.RawMessage `json:"payload"`
}

func (s *Server) adminExport(c *gin.Context) {
	req, ok := s.readEmail(c, false)
	if !ok {
		return
	}
	rows, err := s.out.Export(c.Request.Context(), s.hash.Email(req.Email))
	if err != nil {
		s.internalError(c, "export rows", err)
		return
	}
	out := make([]ExportedRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, ExportedRow{NodeID: r.NodeID, Seq: r.Seq, ID: r.ID, Kind: string(r.Kind), ReceivedAt: r.ReceivedAt, Payload: r.Payload})
	}
	s.log.Info("access request answered", "rows", len(out))
	c.JSON(http.StatusOK, gin.H{"node_id": s.set.NodeID, "rows": out})
}

func multipartReader(body []byte, boundary string) *multipart.Reader {
	if boundary == "" {
		return nil
	}
	return multipart.NewReader(bytes.NewReader(body), boundary)
}
