package api_test

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/edgetest"
)

const (
	leads  = "/v1/leads"
	events = "/v1/events"
	// httptestIP is the peer address httptest.NewRequest gives a request.
	httptestIP = "192.0.2.1"
)

// wantJSONError checks a JSON error answer: status, the contract's
// {"error":…,"fields":…} body and its content type.
func wantJSONError(t *testing.T, w *httptest.ResponseRecorder, status int, code string, fields map[string]string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	body := edgetest.DecodeJSON(t, w)
	if body["error"] != code {
		t.Errorf("error = %v, want %q (body %s)", body["error"], code, w.Body)
	}
	got := map[string]string{}
	if f, ok := body["fields"].(map[string]any); ok {
		for k, v := range f {
			got[k] = fmt.Sprint(v)
		}
	}
	if fields == nil {
		fields = map[string]string{}
	}
	if !reflect.DeepEqual(got, fields) {
		t.Errorf("fields = %v, want %v", got, fields)
	}
}

// wantRedirect checks a form answer: 303 with no body to base, carrying
// the query parameters in want (and no others).
func wantRedirect(t *testing.T, w *httptest.ResponseRecorder, base string, want url.Values) {
	t.Helper()
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status = %d, want 303 (body %s)", w.Code, w.Body)
	}
	if w.Body.Len() != 0 {
		t.Errorf("a form post got a body: %q", w.Body)
	}
	if ct := w.Header().Get("Content-Type"); strings.Contains(ct, "json") {
		t.Errorf("a form post got Content-Type %q", ct)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatalf("Location %q: %v", w.Header().Get("Location"), err)
	}
	q := loc.Query()
	loc.RawQuery = ""
	if loc.String() != base {
		t.Errorf("Location = %s, want %s", w.Header().Get("Location"), base)
	}
	if want == nil {
		want = url.Values{}
	}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("Location query = %v, want %v", q, want)
	}
}

func TestLeadJSONAccepted(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	w := edgetest.PostJSON(e.Public, leads, `{
		"email": "  Bob.Smith@Example.COM ", "property": "field-notes", "consent": "Express",
		"policy_version": "2024-05", "source": "footer", "name": " Bob Smith ",
		"page": "https://site.example/", "referrer": "https://search.example/?q=x"}`)
	if w.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202 (body %s)", w.Code, w.Body)
	}
	body := edgetest.DecodeJSON(t, w)
	id, _ := body["id"].(string)
	if id == "" || body["status"] != "accepted" {
		t.Fatalf("body = %s, want an id and status accepted", w.Body)
	}
	if want := `{"id":"` + id + `","status":"accepted"}`; w.Body.String() != want ||
		w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("answer %s (%s), want %s as JSON", w.Body, w.Header().Get("Content-Type"), want)
	}

	var (
		rowID, nodeID, kind, payload string
		emailHMAC, ipHMAC            []byte
		receivedAt                   int64
	)
	err := db.QueryRow(`SELECT id, node_id, kind, payload, email_hmac, ip_hmac, received_at FROM outbox`).
		Scan(&rowID, &nodeID, &kind, &payload, &emailHMAC, &ipHMAC, &receivedAt)
	if err != nil {
		t.Fatalf("read the stored row: %v", err)
	}
	if rowID != id || nodeID != edgetest.NodeID || kind != string(mailslot.KindLead) || receivedAt == 0 {
		t.Errorf("row = (%s, %s, %s, %d), want (%s, %s, lead, non-zero)", rowID, nodeID, kind, receivedAt, id, edgetest.NodeID)
	}
	if !bytes.Equal(emailHMAC, e.Hasher.Email("bob.smith@example.com")) {
		t.Errorf("email_hmac is not the HMAC of the normalized email")
	}
	if !bytes.Equal(ipHMAC, e.Hasher.IP(httptestIP)) {
		t.Errorf("ip_hmac is not the HMAC of the peer address")
	}
	p := edgetest.Payloads(t, db, mailslot.KindLead)[0]
	for k, want := range map[string]string{
		"email": "bob.smith@example.com", "property": "field-notes", "consent": "express",
		"policy_version": "2024-05", "source": "footer", "name": "Bob Smith",
		"page": "https://site.example/", "referrer": "https://search.example/?q=x",
	} {
		if p[k] != want {
			t.Errorf("payload %s = %v, want %q", k, p[k], want)
		}
	}
	rec, _ := p["consent_record"].(map[string]any)
	for k, want := range map[string]string{
		"property": "field-notes", "policy_version": "2024-05", "status": "express", "source": "footer",
		"ip_hmac": hex.EncodeToString(e.Hasher.IP(httptestIP)),
	} {
		if rec[k] != want {
			t.Errorf("consent_record %s = %v, want %q", k, rec[k], want)
		}
	}
	if rec["recorded_at"] == nil {
		t.Error("consent_record has no recorded_at")
	}
}

func TestLeadConsentDefaultsToPending(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	if w := edgetest.PostJSON(e.Public, leads, `{"email":"a@example.com","property":"p"}`); w.Code != http.StatusAccepted {
		t.Fatalf("status = %d (body %s)", w.Code, w.Body)
	}
	p := edgetest.Payloads(t, db, mailslot.KindLead)[0]
	if p["consent"] != "pending" || p["consent_record"].(map[string]any)["status"] != "pending" {
		t.Errorf("consent = %v / %v, want pending", p["consent"], p["consent_record"])
	}
}

// TestLeadImageURL: a sign-up may bring an image on an allowlisted https
// host; anything else is a field error and stores nothing.
func TestLeadImageURL(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_IMAGE_ALLOWED_HOSTS": "cdn.example.com"})
	db := edgetest.OpenDB(t, e.Config.DataDir)
	for _, tt := range []struct{ url, code string }{
		{"http://cdn.example.com/a.jpg", "not_https"},
		{"https://evil.example.com/a.jpg", "host_not_allowed"},
		{"https://user@cdn.example.com/a.jpg", "invalid"},
	} {
		w := edgetest.PostJSON(e.Public, leads, `{"email":"a@example.com","property":"p","image_url":"`+tt.url+`"}`)
		if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), `"image_url":"`+tt.code+`"`) {
			t.Errorf("%s: status %d body %s, want 422 with image_url %s", tt.url, w.Code, w.Body, tt.code)
		}
	}
	if n := edgetest.CountKind(t, db, mailslot.KindLead); n != 0 {
		t.Fatalf("refused sign-ups stored %d rows", n)
	}
	w := edgetest.PostJSON(e.Public, leads, `{"email":"a@example.com","property":"p","image_url":"https://CDN.example.com/a.jpg#x"}`)
	if w.Code != http.StatusAccepted {
		t.Fatalf("allowlisted image: status %d body %s", w.Code, w.Body)
	}
	if got := edgetest.Payloads(t, db, mailslot.KindLead)[0]["image_url"]; got != "https://cdn.example.com/a.jpg" {
		t.Errorf("stored image_url = %v, want the normalized URL", got)
	}
}

func TestLeadFormAccepted(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	w := edgetest.PostForm(e.Public, leads, url.Values{
		"email": {"Ann@Example.com"}, "property": {"field-notes"}, "consent": {"implied"},
		"website": {""}, // the honeypot, left empty as a person leaves it
	})
	wantRedirect(t, w, edgetest.ThanksURL, nil)
	p := edgetest.Payloads(t, db, mailslot.KindLead)
	if len(p) != 1 || p[0]["email"] != "ann@example.com" || p[0]["consent"] != "implied" {
		t.Errorf("stored %v, want one lead for ann@example.com with implied consent", p)
	}
}

func TestLeadJSONBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 201)
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		fields      map[string]string
	}{
		{"malformed JSON", "application/json", `{"email":`, 400, "invalid_json", nil},
		{"empty body", "application/json", ``, 400, "invalid_json", nil},
		{"array", "application/json", `[{"email":"a@example.com","property":"p"}]`, 400, "invalid_json", nil},
		{"null", "application/json", `null`, 400, "invalid_json", nil},
		{"trailing data", "application/json", `{"email":"a@example.com","property":"p"} {}`, 400, "invalid_json", nil},
		{"invalid email", "application/json", `{"email":"not-an-email","property":"p"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"email with display name", "application/json", `{"email":"Bob <bob@example.com>","property":"p"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"email without dotted domain", "application/json", `{"email":"bob@localhost","property":"p"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"email not a string", "application/json", `{"email":42,"property":"p"}`, 422, "invalid_fields", map[string]string{"email": "invalid"}},
		{"missing fields", "application/json", `{}`, 422, "invalid_fields", map[string]string{"email": "required", "property": "required"}},
		{"blank email", "application/json", `{"email":"  ","property":"p"}`, 422, "invalid_fields", map[string]string{"email": "required"}},
		{"unknown field", "application/json", `{"email":"a@example.com","property":"p","colour":"blue"}`, 422, "invalid_fields", map[string]string{"colour": "unknown"}},
		{"bad consent", "application/json", `{"email":"a@example.com","property":"p","consent":"yes"}`, 422, "invalid_fields", map[string]string{"consent": "invalid"}},
		{"withdrawn consent", "application/json", `{"email":"a@example.com","property":"p","consent":"withdrawn"}`, 422, "invalid_fields", map[string]string{"consent": "invalid"}},
		{"property with spaces", "application/json", `{"email":"a@example.com","property":"my site"}`, 422, "invalid_fields", map[string]string{"property": "invalid"}},
		{"name too long", "application/json", `{"email":"a@example.com","property":"p","name":"` + long + `"}`, 422, "invalid_fields", map[string]string{"name": "too_long"}},
		{"control character", "application/json", `{"email":"a@example.com","property":"p","name":"a\u0007b"}`, 422, "invalid_fields", map[string]string{"name": "invalid"}},
		{"utm not an object", "application/json", `{"email":"a@example.com","property":"p","utm":"x"}`, 422, "invalid_fields", map[string]string{"utm": "invalid"}},
		{"unknown utm key", "application/json", `{"email":"a@example.com","property":"p","utm":{"foo":"x"}}`, 422, "invalid_fields", map[string]string{"utm_foo": "unknown"}},
		{"utm nested and flat", "application/json", `{"email":"a@example.com","property":"p","utm":{"source":"a"},"utm_source":"b"}`, 422, "invalid_fields", map[string]string{"utm_source": "duplicate"}},
		{"text/plain", "text/plain", `{"email":"a@example.com","property":"p"}`, 415, "unsupported_media_type", nil},
		{"xml", "application/xml", `<lead/>`, 415, "unsupported_media_type", nil},
		{"no content type", "", `{"email":"a@example.com","property":"p"}`, 415, "unsupported_media_type", nil},
		{"non-UTF-8 charset", "application/json; charset=latin1", `{"email":"a@example.com","property":"p"}`, 415, "unsupported_media_type", nil},
		{"oversize", "application/json", `{"email":"a@example.com","property":"p","name":"` + strings.Repeat("x", 17<<10) + `"}`, 413, "body_too_large", nil},
	}
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := edgetest.Post(e.Public, leads, tt.contentType, tt.body)
			wantJSONError(t, w, tt.status, tt.code, tt.fields)
		})
	}
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("%d rows stored from bad input, want 0", n)
	}
}

// chunked makes a request whose body has no declared length, as a client
// sending Transfer-Encoding: chunked does.
func chunked(path, contentType string, size int) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, nil)
	req.Body = io.NopCloser(io.LimitReader(repeatReader('a'), int64(size)))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	req.Header.Set("Content-Type", contentType)
	return req
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestOversizeChunkedBody(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	t.Run("json lead", func(t *testing.T) {
		w := edgetest.Serve(e.Public, chunked(leads, "application/json", 1<<20))
		wantJSONError(t, w, http.StatusRequestEntityTooLarge, "body_too_large", nil)
	})
	t.Run("events", func(t *testing.T) {
		w := edgetest.Serve(e.Public, chunked(events, "text/plain;charset=UTF-8", 1<<20))
		wantJSONError(t, w, http.StatusRequestEntityTooLarge, "body_too_large", nil)
	})
	t.Run("form lead", func(t *testing.T) {
		w := edgetest.Serve(e.Public, chunked(leads, "application/x-www-form-urlencoded", 1<<20))
		wantRedirect(t, w, edgetest.ErrorURL, url.Values{"error": {"body_too_large"}})
	})
	t.Run("small chunked body is read", func(t *testing.T) {
		body := `{"email":"chunk@example.com","property":"p"}`
		req := httptest.NewRequest(http.MethodPost, leads, nil)
		req.Body = io.NopCloser(io.MultiReader(strings.NewReader(body)))
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Header.Set("Content-Type", "application/json")
		if w := edgetest.Serve(e.Public, req); w.Code != http.StatusAccepted {
			t.Fatalf("status = %d, want 202 (body %s)", w.Code, w.Body)
		}
	})
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("%d rows stored, want only the small one", n)
	}
}

// TestLeadFormFailures checks that a form post never gets a JSON body:
// every failure is a 303 to the error page with the reason in the query.
func TestLeadFormFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		header      []string
		want        url.Values
	}{
		{"invalid email", "", "email=nope&property=p", nil, url.Values{"error": {"invalid_fields"}, "field": {"email"}}},
		{"missing fields", "", "", nil, url.Values{"error": {"invalid_fields"}, "field": {"email"}}},
		{"missing property", "", "email=a%40example.com", nil, url.Values{"error": {"invalid_fields"}, "field": {"property"}}},
		{"unknown field", "", "email=a%40example.com&property=p&colour=blue", nil, url.Values{"error": {"invalid_fields"}, "field": {"colour"}}},
		{"bad consent", "", "email=a%40example.com&property=p&consent=maybe", nil, url.Values{"error": {"invalid_fields"}, "field": {"consent"}}},
		{"repeated field", "", "email=a%40example.com&email=b%40example.com&property=p", nil, url.Values{"error": {"invalid_fields"}, "field": {"email"}}},
		{"broken encoding", "", "email=%zz&property=p", nil, url.Values{"error": {"invalid_form"}}},
		{"oversize", "", "email=a%40example.com&property=p&name=" + strings.Repeat("x", 17<<10), nil, url.Values{"error": {"body_too_large"}}},
		{"bad idempotency key header", "", "email=a%40example.com&property=p", []string{"Idempotency-Key", strings.Repeat("k", 129)}, url.Values{"error": {"invalid_idempotency_key"}}},
		{"idempotency key header and field differ", "", "email=a%40example.com&property=p&idempotency_key=one", []string{"Idempotency-Key", "two"}, url.Values{"error": {"invalid_idempotency_key"}}},
		{"multipart form", "multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@example.com\r\n--xyz--\r\n", nil, url.Values{"error": {"unsupported_media_type"}}},
		{"form in another charset", "application/x-www-form-urlencoded; charset=ISO-8859-1", "email=a%40example.com&property=p", nil, url.Values{"error": {"unsupported_media_type"}}},
	}
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			w := edgetest.Post(e.Public, leads, ct, tt.body, tt.header...)
			wantRedirect(t, w, edgetest.ErrorURL, tt.want)
		})
	}
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("%d rows stored from bad forms, want 0", n)
	}
}

func TestLeadFormRedirect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		redirect string
		want     string
	}{
		{"https://site.example/welcome?from=form", "https://site.example/welcome?from=form"},
		{"http://site.example/welcome", "http://site.example/welcome"},
		{"https://SITE.example/welcome", "https://SITE.example/welcome"},
		// Everything else lands on the configured thank-you page.
		{"https://evil.example/phish", edgetest.ThanksURL},
		{"//evil.example/phish", edgetest.ThanksURL},
		{"///evil.example/phish", edgetest.ThanksURL},
		{"https://site.example@evil.example/", edgetest.ThanksURL},
		{"https://site.example:pw@evil.example/", edgetest.ThanksURL},
		{"https://evil.example\\@site.example/", edgetest.ThanksURL},
		{"https://user@site.example/", edgetest.ThanksURL},
		{"https://evil.example#@site.example", edgetest.ThanksURL},
		{"https://site.example.evil.example/", edgetest.ThanksURL},
		{"https://site.example:8443/", edgetest.ThanksURL},
		{"https:evil.example", edgetest.ThanksURL},
		{"https:\\\\evil.example", edgetest.ThanksURL},
		{"javascript:alert(document.domain)", edgetest.ThanksURL},
		{"JavaScript://site.example/%0aalert(1)", edgetest.ThanksURL},
		{"data:text/html,<script>alert(1)</script>", edgetest.ThanksURL},
		{"ftp://site.example/file", edgetest.ThanksURL},
		{"/welcome", edgetest.ThanksURL},
		{"welcome.html", edgetest.ThanksURL},
		{"  https://evil.example/", edgetest.ThanksURL},
		{"", edgetest.ThanksURL},
	}
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	for i, tt := range tests {
		t.Run(tt.redirect, func(t *testing.T) {
			w := edgetest.PostForm(e.Public, leads, url.Values{
				"email":    {fmt.Sprintf("r%d@example.com", i)},
				"property": {"p"},
				"redirect": {tt.redirect},
			})
			if w.Code != http.StatusSeeOther || w.Body.Len() != 0 {
				t.Fatalf("status %d body %q, want 303 and no body", w.Code, w.Body)
			}
			if loc := w.Header().Get("Location"); loc != tt.want {
				t.Errorf("Location = %q, want %q", loc, tt.want)
			}
		})
	}
	// Every one of them was a good sign-up: the redirect only picks the page.
	if n := edgetest.CountKind(t, db, mailslot.KindLead); n != len(tests) {
		t.Errorf("%d leads stored, want %d", n, len(tests))
	}
}

// A form on an https page must not be sent on to an http page, even on an
// allowlisted host: the edge's own scheme (TLS, or the trusted proxy's
// X-Forwarded-Proto) decides.
func TestLeadFormRedirectKeepsHTTPS(t *testing.T) {
	post := func(e *edgetest.Edge, redirect string, overTLS bool, header ...string) string {
		body := url.Values{"email": {"s@example.com"}, "property": {"p"}, "redirect": {redirect}}.Encode()
		req := httptest.NewRequest(http.MethodPost, leads, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if overTLS {
			req.TLS = &tls.ConnectionState{}
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return edgetest.Serve(e.Public, req).Header().Get("Location")
	}
	direct := edgetest.NewEdge(t, nil)
	proxied := edgetest.NewEdge(t, map[string]string{"MAILSLOT_CLIENT_IP_HEADER": "Fly-Client-IP"})
	cases := []struct {
		name     string
		e        *edgetest.Edge
		redirect string
		tls      bool
		header   []string
		want     string
	}{
		{"http edge, http page", direct, "http://site.example/welcome", false, nil, "http://site.example/welcome"},
		{"TLS edge, http page", direct, "http://site.example/welcome", true, nil, edgetest.ThanksURL},
		{"TLS edge, https page", direct, "https://site.example/welcome", true, nil, "https://site.example/welcome"},
		{"behind the trusted proxy over https", proxied, "http://site.example/welcome", false, []string{"X-Forwarded-Proto", "https", "Fly-Client-IP", "198.51.100.1"}, edgetest.ThanksURL},
		{"behind the trusted proxy over http", proxied, "http://site.example/welcome", false, []string{"X-Forwarded-Proto", "http", "Fly-Client-IP", "198.51.100.1"}, "http://site.example/welcome"},
		{"a client's own X-Forwarded-Proto is not trusted", direct, "http://site.example/welcome", false, []string{"X-Forwarded-Proto", "https"}, "http://site.example/welcome"},
	}
	for _, c := range cases {
		if got := post(c.e, c.redirect, c.tls, c.header...); got != c.want {
			t.Errorf("%s: Location = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestUTMStoredTheSameWay posts the same campaign nested in JSON, flattened
// in JSON and flattened in a form, and compares what the outbox holds.
func TestUTMStoredTheSameWay(t *testing.T) {
	t.Parallel()
	want := map[string]any{"source": "newsletter", "medium": "email", "campaign": "spring", "term": "t", "content": "c"}
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)

	posts := []struct {
		name string
		do   func() *httptest.ResponseRecorder
	}{
		{"json nested", func() *httptest.ResponseRecorder {
			return edgetest.PostJSON(e.Public, leads, `{"email":"u1@example.com","property":"p",
				"utm":{"source":"newsletter","medium":"email","campaign":"spring","term":"t","content":" c "}}`)
		}},
		{"json flat", func() *httptest.ResponseRecorder {
			return edgetest.PostJSON(e.Public, leads, `{"email":"u2@example.com","property":"p",
				"utm_source":"newsletter","utm_medium":"email","utm_campaign":"spring","utm_term":"t","utm_content":"c"}`)
		}},
		{"form flat", func() *httptest.ResponseRecorder {
			return edgetest.PostForm(e.Public, leads, url.Values{"email": {"u3@example.com"}, "property": {"p"},
				"utm_source": {"newsletter"}, "utm_medium": {"email"}, "utm_campaign": {"spring"}, "utm_term": {"t"}, "utm_content": {"c"}})
		}},
		{"event nested", func() *httptest.ResponseRecorder {
			return edgetest.PostJSON(e.Public, events, `{"type":"page_view","property":"p",
				"utm":{"source":"newsletter","medium":"email","campaign":"spring","term":"t","content":"c"}}`)
		}},
	}
	for _, p := range posts {
		if w := p.do(); w.Code != http.StatusAccepted && w.Code != http.StatusSeeOther {
			t.Fatalf("%s: status %d (body %s)", p.name, w.Code, w.Body)
		}
	}
	stored := append(edgetest.Payloads(t, db, mailslot.KindLead), edgetest.Payloads(t, db, mailslot.KindEvent)...)
	if len(stored) != len(posts) {
		t.Fatalf("%d rows stored, want %d", len(stored), len(posts))
	}
	for i, p := range stored {
		if !reflect.DeepEqual(p["utm"], want) {
			t.Errorf("%s: stored utm = %v, want %v", posts[i].name, p["utm"], want)
		}
		for _, flat := range []string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"} {
			if _, ok := p[flat]; ok {
				t.Errorf("%s: payload keeps a flat %s", posts[i].name, flat)
			}
		}
	}
}

func TestHoneypot(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	t.Run("json", func(t *testing.T) {
		w := edgetest.PostJSON(e.Public, leads, `{"email":"bot@example.com","property":"p","website":"http://spam.example"}`)
		if w.Code != http.StatusAccepted {
			t.Fatalf("status = %d, want 202 like a success (body %s)", w.Code, w.Body)
		}
		if b := edgetest.DecodeJSON(t, w); b["id"] == "" || b["status"] != "accepted" {
			t.Errorf("body = %s, want it to look like a success", w.Body)
		}
	})
	t.Run("json with otherwise bad input", func(t *testing.T) {
		w := edgetest.PostJSON(e.Public, leads, `{"email":"nope","website":"x","colour":"red"}`)
		if w.Code != http.StatusAccepted {
			t.Fatalf("status = %d, want 202: a bot learns nothing (body %s)", w.Code, w.Body)
		}
	})
	t.Run("form", func(t *testing.T) {
		w := edgetest.PostForm(e.Public, leads, url.Values{"email": {"bot@example.com"}, "property": {"p"}, "website": {"x"}})
		wantRedirect(t, w, edgetest.ThanksURL, nil)
	})
	t.Run("form honours an allowlisted redirect", func(t *testing.T) {
		w := edgetest.PostForm(e.Public, leads, url.Values{"email": {"bot@example.com"}, "property": {"p"}, "website": {"x"},
			"redirect": {"https://site.example/welcome"}})
		wantRedirect(t, w, "https://site.example/welcome", nil)
	})
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("%d rows stored from the honeypot, want 0", n)
	}
}

func TestLeadIdempotency(t *testing.T) {
	t.Parallel()
	const body = `{"email":"retry@example.com","property":"p"}`
	t.Run("json header", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		db := edgetest.OpenDB(t, e.Config.DataDir)
		first := edgetest.PostJSON(e.Public, leads, body, "Idempotency-Key", "key-1")
		if first.Code != http.StatusAccepted || first.Header().Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: status %d replayed %q (body %s)", first.Code, first.Header().Get("Idempotent-Replayed"), first.Body)
		}
		id := edgetest.DecodeJSON(t, first)["id"]
		// The same sign-up, written differently, is the same body once normalized.
		for _, retry := range []string{body, `{"property":"p","email":" RETRY@example.com "}`} {
			w := edgetest.PostJSON(e.Public, leads, retry, "Idempotency-Key", "key-1")
			if w.Code != http.StatusAccepted {
				t.Fatalf("retry: status %d (body %s)", w.Code, w.Body)
			}
			if got := edgetest.DecodeJSON(t, w)["id"]; got != id {
				t.Errorf("retry id = %v, want the first id %v", got, id)
			}
			if w.Header().Get("Idempotent-Replayed") != "true" {
				t.Error("retry lacks Idempotent-Replayed: true")
			}
		}
		w := edgetest.PostJSON(e.Public, leads, `{"email":"other@example.com","property":"p"}`, "Idempotency-Key", "key-1")
		wantJSONError(t, w, http.StatusUnprocessableEntity, "idempotency_key_reused", nil)
		if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
			t.Errorf("%d rows, want 1", n)
		}
	})
	t.Run("json member", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		db := edgetest.OpenDB(t, e.Config.DataDir)
		b := `{"email":"retry@example.com","property":"p","idempotency_key":"k-2"}`
		a1 := edgetest.DecodeJSON(t, edgetest.PostJSON(e.Public, leads, b))["id"]
		w := edgetest.PostJSON(e.Public, leads, b)
		if a2 := edgetest.DecodeJSON(t, w)["id"]; a1 != a2 || w.Header().Get("Idempotent-Replayed") != "true" {
			t.Errorf("ids %v then %v (replayed %q), want one id replayed", a1, a2, w.Header().Get("Idempotent-Replayed"))
		}
		if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
			t.Errorf("%d rows, want 1", n)
		}
	})
	t.Run("form hidden field", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		db := edgetest.OpenDB(t, e.Config.DataDir)
		form := url.Values{"email": {"retry@example.com"}, "property": {"p"}, "idempotency_key": {"form-key-1"}}
		wantRedirect(t, edgetest.PostForm(e.Public, leads, form), edgetest.ThanksURL, nil)
		w := edgetest.PostForm(e.Public, leads, form)
		wantRedirect(t, w, edgetest.ThanksURL, nil)
		if w.Header().Get("Idempotent-Replayed") != "true" {
			t.Error("form retry lacks Idempotent-Replayed: true")
		}
		form.Set("email", "someone-else@example.com")
		wantRedirect(t, edgetest.PostForm(e.Public, leads, form), edgetest.ErrorURL, url.Values{"error": {"idempotency_key_reused"}})
		if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
			t.Errorf("%d rows, want 1", n)
		}
	})
	t.Run("concurrent retries", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		db := edgetest.OpenDB(t, e.Config.DataDir)
		const n = 16
		ids := make([]any, n)
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				w := edgetest.PostJSON(e.Public, leads, body, "Idempotency-Key", "same")
				codes[i] = w.Code
				var b map[string]any
				if json.Unmarshal(w.Body.Bytes(), &b) == nil {
					ids[i] = b["id"]
				}
			})
		}
		wg.Wait()
		for i := range n {
			if codes[i] != http.StatusAccepted || ids[i] != ids[0] {
				t.Errorf("request %d: status %d id %v, want 202 with id %v", i, codes[i], ids[i], ids[0])
			}
		}
		if got := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); got != 1 {
			t.Errorf("%d rows, want 1", got)
		}
	})
	t.Run("keys are scoped by kind", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		db := edgetest.OpenDB(t, e.Config.DataDir)
		edgetest.PostJSON(e.Public, leads, body, "Idempotency-Key", "shared")
		w := edgetest.PostJSON(e.Public, events, `{"type":"click","property":"p"}`, "Idempotency-Key", "shared")
		if w.Code != http.StatusAccepted || w.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("event with a lead's key: status %d replayed %q, want a fresh 202", w.Code, w.Header().Get("Idempotent-Replayed"))
		}
		if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 2 {
			t.Errorf("%d rows, want 2", n)
		}
	})
}

func TestEventsAccepted(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)

	w := edgetest.PostJSON(e.Public, events, `{"type":"page_view","property":"p","page":"https://site.example/a",
		"ts":"2025-03-01T10:00:00+01:00","props":{"plan":"pro","n":3,"ok":true,"none":null}}`)
	if w.Code != http.StatusAccepted {
		t.Fatalf("single: status %d (body %s)", w.Code, w.Body)
	}
	if b := edgetest.DecodeJSON(t, w); b["status"] != "accepted" || b["count"] != 1.0 {
		t.Errorf("single: body %s", w.Body)
	}

	w = edgetest.PostJSON(e.Public, events, `{"events":[
		{"type":"click","property":"p","name":"cta"},
		{"type":"form_submit","property":"p","submission_id":"abc"},
		{"type":"custom","property":"p","name":"scrolled","ts":1700000000000}]}`)
	if w.Code != http.StatusAccepted || edgetest.DecodeJSON(t, w)["count"] != 3.0 {
		t.Fatalf("batch: status %d (body %s)", w.Code, w.Body)
	}

	// navigator.sendBeacon posts a string: text/plain, and reads no answer.
	w = edgetest.Post(e.Public, events, "text/plain;charset=UTF-8", `{"type":"page_view","property":"beacon"}`)
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("beacon: status %d body %q, want 204 and no body", w.Code, w.Body)
	}

	p := edgetest.Payloads(t, db, mailslot.KindEvent)
	if len(p) != 5 {
		t.Fatalf("%d events stored, want 5", len(p))
	}
	if p[0]["client_time"] != "2025-03-01T09:00:00Z" {
		t.Errorf("client_time = %v, want the client's clock in UTC", p[0]["client_time"])
	}
	if props := p[0]["props"].(map[string]any); props["plan"] != "pro" || props["n"] != 3.0 || props["ok"] != true {
		t.Errorf("props = %v", props)
	}
	for i, typ := range []string{"page_view", "click", "form_submit", "custom", "page_view"} {
		if p[i]["type"] != typ {
			t.Errorf("event %d type = %v, want %s", i, p[i]["type"], typ)
		}
	}
	if p[4]["property"] != "beacon" {
		t.Errorf("beacon event = %v", p[4])
	}
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox WHERE email_hmac IS NOT NULL`); n != 0 {
		t.Errorf("%d events carry an email hash, want 0", n)
	}
}

func TestEventsBatchLimit(t *testing.T) {
	t.Parallel()
	batch := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = `{"type":"click","property":"p"}`
		}
		return `{"events":[` + strings.Join(items, ",") + `]}`
	}
	e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_MAX_EVENTS": "10"})
	db := edgetest.OpenDB(t, e.Config.DataDir)
	if w := edgetest.PostJSON(e.Public, events, batch(10)); w.Code != http.StatusAccepted {
		t.Fatalf("10 events: status %d (body %s)", w.Code, w.Body)
	}
	wantJSONError(t, edgetest.PostJSON(e.Public, events, batch(11)), http.StatusUnprocessableEntity, "too_many_events", map[string]string{"events": "too_long"})
	if w := edgetest.Post(e.Public, events, "text/plain", batch(11)); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("11 events by beacon: status %d, want 422", w.Code)
	}
	if n := edgetest.CountKind(t, db, mailslot.KindEvent); n != 10 {
		t.Errorf("%d events stored, want 10", n)
	}
}

func TestEventsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		fields      map[string]string
	}{
		{"malformed JSON", "application/json", `{"type":`, 400, "invalid_json", nil},
		{"malformed beacon", "text/plain", `not json`, 400, "invalid_json", nil},
		{"scalar", "application/json", `"page_view"`, 400, "invalid_json", nil},
		{"unknown type", "application/json", `{"type":"purchase","property":"p"}`, 422, "invalid_fields", map[string]string{"type": "invalid"}},
		{"missing fields", "application/json", `{}`, 422, "invalid_fields", map[string]string{"type": "required", "property": "required"}},
		{"unknown field", "application/json", `{"type":"click","property":"p","email":"a@example.com"}`, 422, "invalid_fields", map[string]string{"email": "unknown"}},
		{"email in props", "application/json", `{"type":"click","property":"p","props":{"who":"Ann <ann@example.com>"}}`, 422, "invalid_fields", map[string]string{"props.who": "contains_personal_data"}},
		{"nested props", "application/json", `{"type":"click","property":"p","props":{"a":{"b":1}}}`, 422, "invalid_fields", map[string]string{"props.a": "invalid"}},
		{"bad timestamp", "application/json", `{"type":"click","property":"p","ts":"yesterday"}`, 422, "invalid_fields", map[string]string{"ts": "invalid"}},
		{"timestamp JSON cannot encode", "application/json", `{"type":"click","property":"p","ts":"9999-12-31T23:30:00-01:00"}`, 422, "invalid_fields", map[string]string{"ts": "invalid"}},
		{"bad item in batch", "application/json", `{"events":[{"type":"click","property":"p"},{"type":"nope","property":"p"}]}`, 422, "invalid_fields", map[string]string{"events.1.type": "invalid"}},
		{"non-object item", "application/json", `{"events":[{"type":"click","property":"p"},7]}`, 422, "invalid_fields", map[string]string{"events.1": "invalid"}},
		{"empty batch", "application/json", `{"events":[]}`, 422, "invalid_fields", map[string]string{"events": "required"}},
		{"events not a list", "application/json", `{"events":{}}`, 422, "invalid_fields", map[string]string{"events": "invalid"}},
		{"batch beside fields", "application/json", `{"events":[{"type":"click","property":"p"}],"type":"click"}`, 422, "invalid_fields", map[string]string{"type": "unknown"}},
		{"form", "application/x-www-form-urlencoded", `type=click&property=p`, 303, "", nil},
		{"xml", "application/xml", `<event/>`, 415, "unsupported_media_type", nil},
		{"oversize", "application/json", `{"type":"click","property":"p","page":"` + strings.Repeat("x", 17<<10) + `"}`, 413, "body_too_large", nil},
	}
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := edgetest.Post(e.Public, events, tt.contentType, tt.body)
			if tt.status == http.StatusSeeOther {
				// A form cannot carry events; it is answered like any form.
				wantRedirect(t, w, edgetest.ErrorURL, url.Values{"error": {"unsupported_media_type"}})
				return
			}
			wantJSONError(t, w, tt.status, tt.code, tt.fields)
		})
	}
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("%d rows stored from bad input, want 0", n)
	}
}

func TestEventsIdempotency(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	const body = `{"events":[{"type":"click","property":"p"},{"type":"page_view","property":"p"}]}`
	for i := range 2 {
		w := edgetest.PostJSON(e.Public, events, body, "Idempotency-Key", "ev-1")
		if w.Code != http.StatusAccepted || edgetest.DecodeJSON(t, w)["count"] != 2.0 {
			t.Fatalf("post %d: status %d (body %s)", i, w.Code, w.Body)
		}
		if replayed := w.Header().Get("Idempotent-Replayed") == "true"; replayed != (i == 1) {
			t.Errorf("post %d: Idempotent-Replayed = %v", i, replayed)
		}
	}
	wantJSONError(t, edgetest.PostJSON(e.Public, events, `{"type":"click","property":"p"}`, "Idempotency-Key", "ev-1"),
		http.StatusUnprocessableEntity, "idempotency_key_reused", nil)
	if n := edgetest.CountKind(t, db, mailslot.KindEvent); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}
