package api_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"html"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/token"
)

const (
	linkEmail    = "ann.link@example.com"
	linkOther    = "zoe.kept@example.com"
	linkProperty = "site.example"
)

var linkHasher = pii.NewHasher([]byte(edgetest.IPPepper))

type linkClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *linkClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *linkClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// linkEdge is a test edge with token keys and a settable clock, and its
// outbox file open for reading.
type linkEdge struct {
	*edgetest.Edge
	t     *testing.T
	clock *linkClock
	keys  *token.Keys
	db    *sql.DB
}

func newLinkEdge(t *testing.T) *linkEdge {
	t.Helper()
	keys, err := token.ParseKeys(edgetest.TokenKey)
	if err != nil {
		t.Fatal(err)
	}
	clock := &linkClock{t: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	e := edgetest.NewEdge(t, nil, func(o *api.Options) { o.Tokens, o.Now = keys, clock.Now })
	return &linkEdge{Edge: e, t: t, clock: clock, keys: keys, db: edgetest.OpenDB(t, e.Config.DataDir)}
}

func (e *linkEdge) request(h http.Handler, method, target, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return edgetest.Serve(h, req)
}

// mint asks the private admin API for an address's links.
func (e *linkEdge) mint(email string) api.Links {
	e.t.Helper()
	w := edgetest.PostJSON(e.Private, "/admin/links", `{"email":"`+email+`","property":"`+linkProperty+`"}`)
	if w.Code != http.StatusOK {
		e.t.Fatalf("mint links: %d %s", w.Code, w.Body)
	}
	var l api.Links
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// target is a minted link's path and query, for httptest.
func target(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("parse link %q: %v", link, err)
	}
	return u.RequestURI()
}

// signUp stores a sign-up and returns its id.
func (e *linkEdge) signUp(email string) string {
	e.t.Helper()
	w := edgetest.PostJSON(e.Public, "/v1/leads", `{"email":"`+email+`","property":"`+linkProperty+`","consent":"pending","name":"Ann"}`)
	if w.Code != http.StatusAccepted {
		e.t.Fatalf("sign-up: %d %s", w.Code, w.Body)
	}
	return edgetest.DecodeJSON(e.t, w)["id"].(string)
}

// rows is the outbox as text, to show that a request changed nothing.
func (e *linkEdge) rows() string {
	e.t.Helper()
	r, err := e.db.Query(`SELECT seq, kind, payload, hex(COALESCE(email_hmac, x'')) FROM outbox ORDER BY seq`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	var b strings.Builder
	for r.Next() {
		var seq int64
		var kind, payload, h string
		if err := r.Scan(&seq, &kind, &payload, &h); err != nil {
			e.t.Fatal(err)
		}
		b.WriteString(strings.Join([]string{kind, payload, h}, "|") + "\n")
	}
	return b.String()
}

// consentRows are the stored consent changes.
func (e *linkEdge) consentRows() []mailslot.ConsentChange {
	e.t.Helper()
	var out []mailslot.ConsentChange
	for _, p := range edgetest.Payloads(e.t, e.db, mailslot.KindConsent) {
		b, _ := json.Marshal(p)
		var c mailslot.ConsentChange
		if err := json.Unmarshal(b, &c); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

var formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)

func TestLinkPagesShowAFormAndChangeNothing(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	e.signUp(linkEmail)
	links := e.mint(linkEmail)
	before := e.rows()
	for _, link := range []string{links.Confirm, links.Unsubscribe, links.Erase} {
		path := target(t, link)
		w := e.request(e.Public, http.MethodGet, path, "", "")
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q, want HTML", path, ct)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: the page may be cached or leak its token in Referer: %v", path, w.Header())
		}
		m := formAction.FindStringSubmatch(w.Body.String())
		if m == nil {
			t.Fatalf("GET %s: no POST form in %s", path, w.Body)
		}
		if action := html.UnescapeString(m[1]); action != path {
			t.Errorf("GET %s: form posts to %q, want the same link", path, action)
		}
		if strings.Contains(w.Body.String(), "<script") {
			t.Errorf("GET %s: the page needs JavaScript", path)
		}
	}
	if after := e.rows(); after != before {
		t.Errorf("GET pages changed the outbox:\nbefore %s\nafter  %s", before, after)
	}
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	multipartBody := func() (string, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		_ = mw.WriteField("List-Unsubscribe", "One-Click")
		_ = mw.Close()
		return mw.FormDataContentType(), b.String()
	}
	mpType, mpBody := multipartBody()
	cases := []struct {
		name, contentType, body string
		header                  []string
		source                  string
		wantJSON                bool
	}{
		// The page's button: a form with no fields.
		{"form button", "application/x-www-form-urlencoded", "", []string{"Accept", "text/html"}, "unsubscribe_link", false},
		{"no body at all", "", "", nil, "unsubscribe_link", false},
		// RFC 8058 one-click, as a mail client sends it (no Accept).
		{"one-click urlencoded", "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", nil, "one_click", true},
		{"one-click urlencoded with charset", "application/x-www-form-urlencoded; charset=utf-8", "List-Unsubscribe=One-Click", nil, "one_click", true},
		{"one-click multipart", mpType, mpBody, nil, "one_click", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newLinkEdge(t)
			e.signUp(linkEmail)
			w := e.request(e.Public, http.MethodPost, target(t, e.mint(linkEmail).Unsubscribe), c.contentType, c.body, c.header...)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200 (%s)", w.Code, w.Body)
			}
			if c.wantJSON {
				if got := edgetest.DecodeJSON(t, w)["status"]; got != "done" {
					t.Errorf("one-click answer %s, want {\"status\":\"done\"}", w.Body)
				}
			} else if !strings.Contains(w.Body.String(), "You are unsubscribed") {
				t.Errorf("answer is not the done page: %s", w.Body)
			}
			got := e.consentRows()
			if len(got) != 1 {
				t.Fatalf("%d consent rows, want 1: %+v", len(got), got)
			}
			want := mailslot.ConsentChange{Action: mailslot.ActionUnsubscribe, Property: linkProperty, Status: mailslot.ConsentWithdrawn,
				Source: c.source, RecordedAt: e.clock.Now()}
			if got[0] != want {
				t.Errorf("consent row %+v, want %+v", got[0], want)
			}
			if n := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE kind = 'consent' AND email_hmac = ? AND ip_hmac IS NOT NULL`,
				linkHasher.Email(linkEmail)); n != 1 {
				t.Errorf("the consent row does not carry the address's hash and an IP hash")
			}
		})
	}

	t.Run("the page's own form records a button press", func(t *testing.T) {
		e := newLinkEdge(t)
		w := e.request(e.Public, http.MethodGet, target(t, e.mint(linkEmail).Unsubscribe), "", "")
		m := formAction.FindStringSubmatch(w.Body.String())
		if m == nil {
			t.Fatalf("no form in %s", w.Body)
		}
		// A browser submits the form's fields (it has none besides the
		// button, which has no name).
		fields := url.Values{}
		for _, in := range regexp.MustCompile(`<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"`).FindAllStringSubmatch(w.Body.String(), -1) {
			fields.Set(in[1], in[2])
		}
		w = e.request(e.Public, http.MethodPost, html.UnescapeString(m[1]), "application/x-www-form-urlencoded", fields.Encode(), "Accept", "text/html")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if got := e.consentRows(); len(got) != 1 || got[0].Source != "unsubscribe_link" {
			t.Errorf("consent rows %+v, want one from the unsubscribe page (source unsubscribe_link)", got)
		}
	})

	t.Run("a body that is neither is refused", func(t *testing.T) {
		e := newLinkEdge(t)
		w := e.request(e.Public, http.MethodPost, target(t, e.mint(linkEmail).Unsubscribe), "text/plain", "please unsubscribe me")
		if w.Code != http.StatusUnsupportedMediaType {
			t.Errorf("status %d, want 415", w.Code)
		}
		if n := len(e.consentRows()); n != 0 {
			t.Errorf("%d consent rows stored", n)
		}
	})
}

func TestBadLinksAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	e.signUp(linkEmail)
	links := e.mint(linkEmail)
	unsub := target(t, links.Unsubscribe)
	tok, _ := url.QueryUnescape(strings.SplitN(unsub, "token=", 2)[1])
	parts := strings.Split(tok, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	expired := e.keys.Sign(token.Claims{Purpose: token.Unsubscribe, Property: linkProperty, EmailHMAC: linkHasher.Email(linkEmail),
		Expires: e.clock.Now().Add(-time.Second)})
	otherKey, _ := token.ParseKeys("k9:another-key-that-is-long-enough")
	foreign := otherKey.Sign(token.Claims{Purpose: token.Unsubscribe, Property: linkProperty, EmailHMAC: linkHasher.Email(linkEmail),
		Expires: e.clock.Now().Add(time.Hour)})
	cases := []struct {
		name, path, code, says string
	}{
		{"tampered sealed claims", "/v1/unsubscribe?token=" + url.QueryEscape(parts[0]+"."+flip(parts[1])), "invalid_token", "altered"},
		{"tampered tag", "/v1/unsubscribe?token=" + url.QueryEscape(parts[0]+"."+parts[1][:len(parts[1])-8]+flip(parts[1][len(parts[1])-8:])), "invalid_token", "altered"},
		{"unknown key", "/v1/unsubscribe?token=" + url.QueryEscape(foreign), "invalid_token", "no longer valid"},
		{"missing token", "/v1/unsubscribe", "invalid_token", "incomplete"},
		{"expired", "/v1/unsubscribe?token=" + url.QueryEscape(expired), "expired_token", "expired"},
		{"confirm link used to unsubscribe", "/v1/unsubscribe?" + strings.SplitN(target(t, links.Confirm), "?", 2)[1], "wrong_purpose", "something else"},
		{"unsubscribe link used to erase", "/v1/erasure?token=" + url.QueryEscape(tok), "wrong_purpose", "something else"},
		{"unsubscribe link used to confirm", "/v1/confirm?token=" + url.QueryEscape(tok), "wrong_purpose", "something else"},
	}
	before := e.rows()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				// A person's browser gets a page that says what is wrong.
				w := e.request(e.Public, method, c.path, "", "", "Accept", "text/html")
				if w.Code != http.StatusBadRequest {
					t.Fatalf("%s: status %d, want 400 (%s)", method, w.Code, w.Body)
				}
				if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Errorf("%s: Content-Type %q, want HTML", method, ct)
				}
				if body := w.Body.String(); !strings.Contains(body, "This link does not work") || !strings.Contains(body, c.says) ||
					strings.Contains(body, "<form") {
					t.Errorf("%s: page does not explain (%q) or still offers the action: %s", method, c.says, body)
				}
				// An API client gets the code.
				w = e.request(e.Public, method, c.path, "", "", "Accept", "application/json")
				if w.Code != http.StatusBadRequest || edgetest.DecodeJSON(t, w)["error"] != c.code {
					t.Errorf("%s with Accept JSON: %d %s, want 400 {\"error\":%q}", method, w.Code, w.Body, c.code)
				}
			}
			// One-click clients too.
			w := e.request(e.Public, http.MethodPost, c.path, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
			if w.Code != http.StatusBadRequest {
				t.Errorf("one-click: status %d, want 400", w.Code)
			}
		})
	}
	if after := e.rows(); after != before {
		t.Errorf("refused links changed the outbox:\nbefore %s\nafter  %s", before, after)
	}
}

func TestUnsubscribeLinksLastAtLeast60Days(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	minted := e.clock.Now()
	links := e.mint(linkEmail)
	if min := minted.Add(60 * 24 * time.Hour); links.Expires.Unsubscribe.Before(min) {
		t.Fatalf("unsubscribe link expires %s, before %s (60 days, CASL)", links.Expires.Unsubscribe, min)
	}
	// The token itself says so, not only the JSON.
	tok, _ := url.QueryUnescape(strings.SplitN(links.Unsubscribe, "token=", 2)[1])
	c, err := e.keys.Verify(tok, token.Unsubscribe, minted)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Expires.Equal(links.Expires.Unsubscribe) {
		t.Errorf("token expires %s, answer says %s", c.Expires, links.Expires.Unsubscribe)
	}
	// It works on day 60 and stops after its expiry.
	e.clock.set(minted.Add(60 * 24 * time.Hour))
	if w := e.request(e.Public, http.MethodPost, target(t, links.Unsubscribe), "", ""); w.Code != http.StatusOK {
		t.Errorf("on day 60: status %d, want 200 (%s)", w.Code, w.Body)
	}
	e.clock.set(links.Expires.Unsubscribe.Add(time.Second))
	w := e.request(e.Public, http.MethodPost, target(t, links.Unsubscribe), "", "", "Accept", "application/json")
	if w.Code != http.StatusBadRequest || edgetest.DecodeJSON(t, w)["error"] != "expired_token" {
		t.Errorf("after expiry: %d %s, want 400 expired_token", w.Code, w.Body)
	}
	if n := len(e.consentRows()); n != 1 {
		t.Errorf("%d consent rows, want 1 (the day-60 unsubscribe)", n)
	}
}

func TestConfirmLinkStoresExpressConsent(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	e.signUp(linkEmail)
	minted := e.clock.Now()
	link := e.mint(linkEmail).Confirm
	// The link is used later; the confirmation says when it was minted, so
	// that sync can tell a link older than a withdrawal.
	e.clock.set(minted.Add(10 * time.Minute))
	w := e.request(e.Public, http.MethodPost, target(t, link), "", "", "Accept", "text/html")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Subscription confirmed") {
		t.Fatalf("confirm: %d %s", w.Code, w.Body)
	}
	got := e.consentRows()
	want := mailslot.ConsentChange{Action: mailslot.ActionConfirm, Property: linkProperty, Status: mailslot.ConsentExpress,
		Source: "confirm_link", RecordedAt: e.clock.Now(), TokenIssuedAt: minted}
	if len(got) != 1 || got[0] != want {
		t.Errorf("consent rows %+v, want [%+v]", got, want)
	}
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE kind = 'consent' AND email_hmac = ?`, linkHasher.Email(linkEmail)); n != 1 {
		t.Errorf("the confirmation does not carry the address's hash")
	}
}

func TestErasureLinkScrubsTheOutboxAtOnce(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	w := edgetest.PostJSON(e.Public, "/v1/leads", `{"email":"`+linkEmail+`","property":"site.example"}`, "Idempotency-Key", "signup-1")
	if w.Code != http.StatusAccepted {
		t.Fatalf("sign-up: %d %s", w.Code, w.Body)
	}
	sub := edgetest.DecodeJSON(t, w)["id"].(string)
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM idempotency`); n != 1 {
		t.Fatalf("%d idempotency entries, want the sign-up's", n)
	}
	if w := edgetest.PostJSON(e.Public, "/v1/events", `{"type":"form_submit","property":"site.example","submission_id":"`+sub+`"}`); w.Code != http.StatusAccepted {
		t.Fatalf("event: %d %s", w.Code, w.Body)
	}
	links := e.mint(linkEmail)
	if w := e.request(e.Public, http.MethodPost, target(t, links.Unsubscribe), "", ""); w.Code != http.StatusOK {
		t.Fatalf("unsubscribe: %d", w.Code)
	}
	e.signUp(linkOther)
	other := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE email_hmac = ? AND payload != '{"erased":true}'`, linkHasher.Email(linkOther))

	e.clock.set(e.clock.Now().Add(time.Minute))
	w = e.request(e.Public, http.MethodPost, target(t, links.Erase), "application/x-www-form-urlencoded", "", "Accept", "text/html")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "being deleted") {
		t.Fatalf("erase: %d %s", w.Code, w.Body)
	}
	// Scrubbed now, before any sync: the sign-up and the unsubscribe keep
	// their seq (for the ledger) and nothing else.
	var erased int
	rows, err := e.db.Query(`SELECT kind, payload, email_hmac IS NULL, ip_hmac IS NULL, idem_key IS NULL FROM outbox WHERE kind IN ('lead', 'consent') ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var kind, payload string
		var noHash, noIP, noKey bool
		if err := rows.Scan(&kind, &payload, &noHash, &noIP, &noKey); err != nil {
			t.Fatal(err)
		}
		if payload == mailslot.ErasedPayload {
			erased++
			if !noHash || !noIP || !noKey {
				t.Errorf("erased %s row keeps a hash or key", kind)
			}
		}
	}
	rows.Close()
	if erased != 2 {
		t.Errorf("%d rows scrubbed, want the sign-up and the unsubscribe", erased)
	}
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE kind = 'event' AND (payload LIKE '%' || ? || '%' OR ip_hmac IS NOT NULL)`, sub); n != 0 {
		t.Errorf("the event still names the erased sign-up or carries the IP hash")
	}
	var reqs []mailslot.ErasureRequest
	for _, p := range edgetest.Payloads(t, e.db, mailslot.KindErasure) {
		b, _ := json.Marshal(p)
		var r mailslot.ErasureRequest
		_ = json.Unmarshal(b, &r)
		reqs = append(reqs, r)
	}
	if len(reqs) != 1 || reqs[0].RequestedBy != "self_service" || !reqs[0].RequestedAt.Equal(e.clock.Now()) {
		t.Errorf("erasure rows %+v, want one self_service request at %s", reqs, e.clock.Now())
	}
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE kind = 'erasure' AND email_hmac = ?`, linkHasher.Email(linkEmail)); n != 1 {
		t.Errorf("the erasure request does not carry the address's hash for Postgres")
	}
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM outbox WHERE email_hmac = ? AND payload != '{"erased":true}'`, linkHasher.Email(linkOther)); n != other || n != 1 {
		t.Errorf("another address's rows changed: %d, want %d", n, other)
	}
	// The erased sign-up's idempotency key is forgotten.
	if n := edgetest.Count(t, e.db, `SELECT count(*) FROM idempotency`); n != 0 {
		t.Errorf("%d idempotency entries of erased rows remain", n)
	}
}

func TestAdminEndpointsNeedTheTokenOnThePublicListener(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	e.signUp(linkEmail)
	body := `{"email":"` + linkEmail + `","property":"` + linkProperty + `"}`
	for _, path := range []string{"/admin/erasures", "/admin/links", "/admin/export"} {
		before := e.rows()
		for _, c := range []struct {
			auth   string
			status int
		}{
			{"", http.StatusUnauthorized},
			{"Basic " + edgetest.AdminToken, http.StatusUnauthorized},
			{"Bearer ", http.StatusUnauthorized},
			{"Bearer wrong-token", http.StatusForbidden},
			{"Bearer " + edgetest.AdminToken + "x", http.StatusForbidden},
		} {
			var w *httptest.ResponseRecorder
			if c.auth == "" {
				w = edgetest.PostJSON(e.Public, path, body)
			} else {
				w = edgetest.PostJSON(e.Public, path, body, "Authorization", c.auth)
			}
			if w.Code != c.status {
				t.Errorf("%s with %q: status %d, want %d", path, c.auth, w.Code, c.status)
			}
			if strings.Contains(w.Body.String(), "token=") || strings.Contains(w.Body.String(), "rows") {
				t.Errorf("%s with %q answered with data: %s", path, c.auth, w.Body)
			}
		}
		if after := e.rows(); after != before {
			t.Errorf("%s: refused calls changed the outbox", path)
		}
	}
	// With the token, the public listener serves them.
	w := edgetest.PostJSON(e.Public, "/admin/links", body, "Authorization", "Bearer "+edgetest.AdminToken)
	if w.Code != http.StatusOK {
		t.Errorf("links with the token: %d %s", w.Code, w.Body)
	}
	// The private listener needs no token.
	for _, c := range []struct {
		path   string
		status int
	}{{"/admin/links", http.StatusOK}, {"/admin/export", http.StatusOK}, {"/admin/erasures", http.StatusAccepted}} {
		if w := edgetest.PostJSON(e.Private, c.path, body); w.Code != c.status {
			t.Errorf("private %s: %d %s, want %d", c.path, w.Code, w.Body, c.status)
		}
	}
	if n := edgetest.CountKind(t, e.db, mailslot.KindErasure); n != 1 {
		t.Errorf("%d erasure requests, want the private listener's one", n)
	}
}

func TestAdminExportReturnsTheAddressRows(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	sub := e.signUp(linkEmail)
	e.signUp(linkOther)
	if w := e.request(e.Public, http.MethodPost, target(t, e.mint(linkEmail).Unsubscribe), "", ""); w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	w := edgetest.PostJSON(e.Private, "/admin/export", `{"email":"  ANN.LINK@example.com "}`)
	if w.Code != http.StatusOK {
		t.Fatalf("export: %d %s", w.Code, w.Body)
	}
	var got struct {
		NodeID string            `json:"node_id"`
		Rows   []api.ExportedRow `json:"rows"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.NodeID != edgetest.NodeID || len(got.Rows) != 2 {
		t.Fatalf("export = %s, want the node's 2 rows of the address", w.Body)
	}
	if got.Rows[0].Kind != "lead" || got.Rows[0].ID != sub || !strings.Contains(string(got.Rows[0].Payload), linkEmail) {
		t.Errorf("first row %+v, want the sign-up with its payload", got.Rows[0])
	}
	if got.Rows[1].Kind != "consent" || !strings.Contains(string(got.Rows[1].Payload), "withdrawn") {
		t.Errorf("second row %+v, want the unsubscribe", got.Rows[1])
	}
	if strings.Contains(w.Body.String(), linkOther) {
		t.Errorf("export includes another address")
	}
	// After an erasure the address has nothing left but the request.
	if w := edgetest.PostJSON(e.Private, "/admin/erasures", `{"email":"`+linkEmail+`"}`); w.Code != http.StatusAccepted {
		t.Fatal(w.Code)
	}
	w = edgetest.PostJSON(e.Private, "/admin/export", `{"email":"`+linkEmail+`"}`)
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Rows) != 1 || got.Rows[0].Kind != "erasure" || strings.Contains(w.Body.String(), linkEmail) {
		t.Errorf("export after erasure = %s, want only the erasure request", w.Body)
	}
}

func TestAdminLinksValidation(t *testing.T) {
	t.Parallel()
	e := newLinkEdge(t)
	cases := []struct {
		name, contentType, body string
		status                  int
		code                    string
		fields                  map[string]string
	}{
		{"bad email", "application/json", `{"email":"not-an-address","property":"site.example"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"display name", "application/json", `{"email":"Ann <ann@example.com>","property":"site.example"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"missing property", "application/json", `{"email":"ann@example.com"}`, 422, "invalid_fields", map[string]string{"property": "required"}},
		{"both", "application/json", `{"email":"","property":""}`, 422, "invalid_fields", map[string]string{"email": "invalid", "property": "required"}},
		{"bad property", "application/json", `{"email":"ann@example.com","property":"site example/../x"}`, 422, "invalid_fields", map[string]string{"property": "invalid"}},
		{"unknown member", "application/json", `{"email":"ann@example.com","property":"site.example","admin":true}`, 400, "invalid_json", nil},
		{"not JSON", "application/json", `email=ann@example.com`, 400, "invalid_json", nil},
		{"form body", "application/x-www-form-urlencoded", `email=ann%40example.com&property=site.example`, 415, "unsupported_media_type", nil},
	}
	for _, c := range cases {
		w := e.request(e.Private, http.MethodPost, "/admin/links", c.contentType, c.body)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, w.Code, c.status, w.Body)
			continue
		}
		var got struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &got)
		if got.Error != c.code || len(got.Fields) != len(c.fields) {
			t.Errorf("%s: %s, want %s %v", c.name, w.Body, c.code, c.fields)
		}
		for k, v := range c.fields {
			if got.Fields[k] != v {
				t.Errorf("%s: field %s = %q, want %q", c.name, k, got.Fields[k], v)
			}
		}
	}
	// A property with spaces around it is minted as sign-ups store it.
	w := edgetest.PostJSON(e.Private, "/admin/links", `{"email":"ann@example.com","property":"  site.example "}`)
	if w.Code != http.StatusOK {
		t.Fatalf("padded property: %d %s", w.Code, w.Body)
	}
	var l api.Links
	_ = json.Unmarshal(w.Body.Bytes(), &l)
	tok, _ := url.QueryUnescape(strings.SplitN(l.Confirm, "token=", 2)[1])
	if c, err := e.keys.Verify(tok, token.Confirm, e.clock.Now()); err != nil || c.Property != linkProperty {
		t.Errorf("confirm token property %q (%v), want %q", c.Property, err, linkProperty)
	}
	if !strings.HasPrefix(l.Confirm, e.Config.PublicURL+"/v1/confirm?token=") ||
		!strings.HasPrefix(l.Unsubscribe, e.Config.PublicURL+"/v1/unsubscribe?token=") ||
		!strings.HasPrefix(l.Erase, e.Config.PublicURL+"/v1/erasure?token=") {
		t.Errorf("links %+v do not point at the public URL's endpoints", l)
	}
}
