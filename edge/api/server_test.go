package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/outbox"
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(c *clock) func(*api.Options) { return func(o *api.Options) { o.Now = c.Now } }

// from sets a request's peer address and header pairs.
func from(remoteAddr string, req *http.Request, header ...string) *http.Request {
	req.RemoteAddr = remoteAddr
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func jsonReq(path, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func formReq(path string, form url.Values) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func lead(email string) string {
	return fmt.Sprintf(`{"email":%q,"property":"p"}`, email)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	for name, h := range map[string]http.Handler{"public": e.Public, "private": e.Private} {
		w := edgetest.Serve(h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if w.Code != http.StatusOK || edgetest.DecodeJSON(t, w)["status"] != "ok" {
			t.Errorf("%s /healthz: %d %s", name, w.Code, w.Body)
		}
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	t.Run("ready", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil)
		for name, h := range map[string]http.Handler{"public": e.Public, "private": e.Private} {
			w := edgetest.Serve(h, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if w.Code != http.StatusOK || edgetest.DecodeJSON(t, w)["status"] != "ready" {
				t.Errorf("%s /readyz: %d %s", name, w.Code, w.Body)
			}
		}
	})
	t.Run("outbox over its row limit", func(t *testing.T) {
		e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_OUTBOX_MAX_ROWS": "1"})
		db := edgetest.OpenDB(t, e.Config.DataDir)
		if w := edgetest.PostJSON(e.Public, leads, lead("first@example.com")); w.Code != http.StatusAccepted {
			t.Fatalf("first sign-up: %d %s", w.Code, w.Body)
		}
		w := edgetest.PostJSON(e.Public, leads, lead("second@example.com"))
		wantJSONError(t, w, http.StatusServiceUnavailable, "unavailable", nil)
		if w.Header().Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		wantRedirect(t, edgetest.PostForm(e.Public, leads, url.Values{"email": {"third@example.com"}, "property": {"p"}}),
			edgetest.ErrorURL, url.Values{"error": {"unavailable"}})
		if w := edgetest.PostJSON(e.Public, events, `{"type":"click","property":"p"}`); w.Code != http.StatusServiceUnavailable {
			t.Errorf("event while full: %d, want 503", w.Code)
		}
		for name, h := range map[string]http.Handler{"public": e.Public, "private": e.Private} {
			w := edgetest.Serve(h, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
				t.Errorf("%s /readyz: %d Retry-After %q, want 503 with Retry-After", name, w.Code, w.Header().Get("Retry-After"))
			}
		}
		if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 1 {
			t.Errorf("%d rows stored, want only the first", n)
		}
		// /healthz is liveness: a full outbox is no reason to restart.
		if w := edgetest.Serve(e.Public, httptest.NewRequest(http.MethodGet, "/healthz", nil)); w.Code != http.StatusOK {
			t.Errorf("/healthz while full: %d", w.Code)
		}
	})
}

func TestSyncStatusNeedsAdminToken(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	edgetest.PostJSON(e.Public, leads, lead("a@example.com"))
	get := func(h http.Handler, target string, header ...string) *httptest.ResponseRecorder {
		return edgetest.Serve(h, from("192.0.2.1:1234", httptest.NewRequest(http.MethodGet, target, nil), header...))
	}
	tests := []struct {
		name   string
		target string
		header []string
		status int
	}{
		{"no token", "/v1/sync/status", nil, http.StatusUnauthorized},
		{"basic auth", "/v1/sync/status", []string{"Authorization", "Basic " + edgetest.AdminToken}, http.StatusUnauthorized},
		{"empty bearer", "/v1/sync/status", []string{"Authorization", "Bearer "}, http.StatusUnauthorized},
		{"token in query", "/v1/sync/status?token=" + edgetest.AdminToken, nil, http.StatusUnauthorized},
		{"wrong token", "/v1/sync/status", []string{"Authorization", "Bearer wrong-token"}, http.StatusForbidden},
		{"token prefix", "/v1/sync/status", []string{"Authorization", "Bearer " + edgetest.AdminToken[:10]}, http.StatusForbidden},
		{"right token", "/v1/sync/status", []string{"Authorization", "Bearer " + edgetest.AdminToken}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(e.Public, tt.target, tt.header...)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
			}
			if tt.status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.status != http.StatusOK && strings.Contains(w.Body.String(), edgetest.NodeID) {
				t.Errorf("refused request still got the status: %s", w.Body)
			}
		})
	}
	t.Run("private listener needs none", func(t *testing.T) {
		w := get(e.Private, "/v1/sync/status")
		if w.Code != http.StatusOK {
			t.Fatalf("status = %d (body %s)", w.Code, w.Body)
		}
		b := edgetest.DecodeJSON(t, w)
		if b["node_id"] != edgetest.NodeID || b["state"] != "disabled" || b["pending"] != 1.0 || b["last_seq"] != 1.0 {
			t.Errorf("body = %s, want node %s, sync disabled, one pending row", w.Body, edgetest.NodeID)
		}
	})
	t.Run("sync status function", func(t *testing.T) {
		e := edgetest.NewEdge(t, nil, func(o *api.Options) {
			o.SyncStatus = func(context.Context) (any, error) { return map[string]string{"sync": "running"}, nil }
		})
		w := get(e.Public, "/v1/sync/status", "Authorization", "Bearer "+edgetest.AdminToken)
		if w.Code != http.StatusOK || edgetest.DecodeJSON(t, w)["sync"] != "running" {
			t.Errorf("%d %s, want the function's answer", w.Code, w.Body)
		}
	})
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	db := edgetest.OpenDB(t, e.Config.DataDir)
	preflight := func(path, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodOptions, path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,idempotency-key")
		return edgetest.Serve(e.Public, req)
	}
	for _, path := range []string{leads, events} {
		t.Run("preflight allowed "+path, func(t *testing.T) {
			w := preflight(path, edgetest.Origin)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", w.Code)
			}
			h := w.Header()
			if got := h.Get("Access-Control-Allow-Origin"); got != edgetest.Origin {
				t.Errorf("Allow-Origin = %q, want %q", got, edgetest.Origin)
			}
			if m := h.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
				t.Errorf("Allow-Methods = %q, want POST", m)
			}
			if a := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(a, "content-type") || !strings.Contains(a, "idempotency-key") {
				t.Errorf("Allow-Headers = %q, want Content-Type and Idempotency-Key", a)
			}
			if h.Get("Access-Control-Max-Age") == "" {
				t.Error("no Access-Control-Max-Age")
			}
		})
	}
	t.Run("simple request allowed", func(t *testing.T) {
		w := edgetest.PostJSON(e.Public, leads, lead("cors@example.com"), "Origin", edgetest.Origin)
		if w.Code != http.StatusAccepted {
			t.Fatalf("status = %d (body %s)", w.Code, w.Body)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != edgetest.Origin {
			t.Errorf("Allow-Origin = %q, want %q", got, edgetest.Origin)
		}
		if ex := w.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(ex, "Retry-After") {
			t.Errorf("Expose-Headers = %q, want Retry-After", ex)
		}
	})
	for _, origin := range []string{
		"https://evil.example",
		"null",
		"http://site.example",               // another scheme is another origin
		"https://site.example.evil.example", // suffix tricks
		"https://site.example:8443",         // another port
		"https://evil.example/https://site.example",
	} {
		t.Run("denied "+origin, func(t *testing.T) {
			for _, w := range []*httptest.ResponseRecorder{
				preflight(leads, origin),
				edgetest.PostJSON(e.Public, leads, lead("denied@example.com"), "Origin", origin),
				edgetest.PostJSON(e.Public, events, `{"type":"click","property":"p"}`, "Origin", origin),
			} {
				if w.Code != http.StatusForbidden {
					t.Errorf("status = %d, want 403", w.Code)
				}
				if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
					t.Errorf("Allow-Origin = %q for a denied origin", got)
				}
			}
			// A plain HTML form needs no preflight: the browser shows the
			// answer, so it gets the error redirect, and nothing is stored.
			w := edgetest.PostForm(e.Public, leads, url.Values{"email": {"denied@example.com"}, "property": {"p"}}, "Origin", origin)
			wantRedirect(t, w, edgetest.ErrorURL, url.Values{"error": {"origin_not_allowed"}})
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("form: Allow-Origin = %q for a denied origin", got)
			}
		})
	}
	t.Run("form from an allowed origin", func(t *testing.T) {
		w := edgetest.PostForm(e.Public, leads, url.Values{"email": {"cors-form@example.com"}, "property": {"p"}}, "Origin", edgetest.Origin)
		wantRedirect(t, w, edgetest.ThanksURL, nil)
	})
	if n := edgetest.Count(t, db, `SELECT count(*) FROM outbox`); n != 2 {
		t.Errorf("%d rows stored, want only the allowed origin's two", n)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_RATE_RPS": "1", "MAILSLOT_RATE_BURST": "2"}, withClock(clk))
	db := edgetest.OpenDB(t, e.Config.DataDir)
	const client = "203.0.113.9:40000"
	post := func(email string) *httptest.ResponseRecorder {
		return edgetest.Serve(e.Public, from(client, jsonReq(leads, lead(email))))
	}
	for i := range 2 {
		if w := post(fmt.Sprintf("burst%d@example.com", i)); w.Code != http.StatusAccepted {
			t.Fatalf("request %d within the burst: %d %s", i, w.Code, w.Body)
		}
	}
	w := post("limited@example.com")
	wantJSONError(t, w, http.StatusTooManyRequests, "rate_limited", nil)
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	ev := edgetest.Serve(e.Public, from(client, jsonReq(events, `{"type":"click","property":"p"}`)))
	if ev.Code != http.StatusTooManyRequests {
		t.Errorf("event from a limited client: %d, want 429", ev.Code)
	}
	fw := edgetest.Serve(e.Public, from(client, formReq(leads, url.Values{"email": {"form@example.com"}, "property": {"p"}})))
	wantRedirect(t, fw, edgetest.ErrorURL, url.Values{"error": {"rate_limited"}})
	if fw.Header().Get("Retry-After") == "" {
		t.Error("rate-limited form post without Retry-After")
	}
	// Another client has its own bucket.
	if w := edgetest.Serve(e.Public, from("203.0.113.10:40000", jsonReq(leads, lead("other@example.com")))); w.Code != http.StatusAccepted {
		t.Errorf("another client: %d, want 202", w.Code)
	}

	clk.Advance(time.Second)
	if w := post("later@example.com"); w.Code != http.StatusAccepted {
		t.Fatalf("after a second: %d %s, want 202", w.Code, w.Body)
	}
	if w := post("again@example.com"); w.Code != http.StatusTooManyRequests {
		t.Errorf("the refilled token was spent, yet: %d", w.Code)
	}
	if n := edgetest.CountKind(t, db, mailslot.KindLead); n != 4 {
		t.Errorf("%d leads stored, want 4 (2 burst, other client, after a second)", n)
	}
}

// TestClientIP checks where the rate-limit key and the stored IP HMAC come
// from: the socket, or the platform header only when configured.
func TestClientIP(t *testing.T) {
	t.Parallel()
	limited := map[string]string{"MAILSLOT_RATE_RPS": "1", "MAILSLOT_RATE_BURST": "1"}
	ipHMACs := func(t *testing.T, db *sql.DB) [][]byte {
		rows, err := db.Query(`SELECT ip_hmac FROM outbox ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]byte
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}

	t.Run("an IPv6 /64 is one client", func(t *testing.T) {
		e := edgetest.NewEdge(t, limited, withClock(newClock()))
		db := edgetest.OpenDB(t, e.Config.DataDir)
		w := edgetest.Serve(e.Public, from("[2001:db8:1:2::1]:5000", jsonReq(leads, lead("a@example.com"))))
		if w.Code != http.StatusAccepted {
			t.Fatalf("first: %d", w.Code)
		}
		w = edgetest.Serve(e.Public, from("[2001:db8:1:2:ffff::9]:5000", jsonReq(leads, lead("b@example.com"))))
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("another address of the same /64 got its own bucket: %d", w.Code)
		}
		w = edgetest.Serve(e.Public, from("[2001:db8:1:3::1]:5000", jsonReq(leads, lead("c@example.com"))))
		if w.Code != http.StatusAccepted {
			t.Errorf("the next /64 was limited too: %d", w.Code)
		}
		// What is stored stays the exact address's hash.
		if got := ipHMACs(t, db); len(got) != 2 || !bytes.Equal(got[0], e.Hasher.IP("2001:db8:1:2::1")) {
			t.Errorf("ip_hmac is not the client address's HMAC")
		}
	})
	t.Run("X-Forwarded-For does not change the key", func(t *testing.T) {
		e := edgetest.NewEdge(t, limited, withClock(newClock()))
		db := edgetest.OpenDB(t, e.Config.DataDir)
		w := edgetest.Serve(e.Public, from("203.0.113.7:5000", jsonReq(leads, lead("a@example.com")), "X-Forwarded-For", "198.51.100.1"))
		if w.Code != http.StatusAccepted {
			t.Fatalf("first: %d", w.Code)
		}
		w = edgetest.Serve(e.Public, from("203.0.113.7:5001", jsonReq(leads, lead("b@example.com")), "X-Forwarded-For", "198.51.100.2", "X-Real-IP", "198.51.100.3"))
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("a forged X-Forwarded-For escaped the limit: %d", w.Code)
		}
		if got := ipHMACs(t, db); len(got) != 1 || !bytes.Equal(got[0], e.Hasher.IP("203.0.113.7")) {
			t.Errorf("ip_hmac is not the socket address's HMAC")
		}
	})
	t.Run("Fly-Client-IP ignored unless configured", func(t *testing.T) {
		e := edgetest.NewEdge(t, limited, withClock(newClock()))
		db := edgetest.OpenDB(t, e.Config.DataDir)
		edgetest.Serve(e.Public, from("203.0.113.7:5000", jsonReq(leads, lead("a@example.com")), "Fly-Client-IP", "198.51.100.1"))
		w := edgetest.Serve(e.Public, from("203.0.113.7:5000", jsonReq(leads, lead("b@example.com")), "Fly-Client-IP", "198.51.100.2"))
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("an unconfigured Fly-Client-IP escaped the limit: %d", w.Code)
		}
		if got := ipHMACs(t, db); len(got) != 1 || !bytes.Equal(got[0], e.Hasher.IP("203.0.113.7")) {
			t.Errorf("ip_hmac is not the socket address's HMAC")
		}
	})
	t.Run("Fly-Client-IP honoured when configured", func(t *testing.T) {
		e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_RATE_RPS": "1", "MAILSLOT_RATE_BURST": "1",
			"MAILSLOT_CLIENT_IP_HEADER": "Fly-Client-IP"}, withClock(newClock()))
		db := edgetest.OpenDB(t, e.Config.DataDir)
		const proxy = "172.16.0.2:60000" // every request arrives from Fly's proxy
		for i, ip := range []string{"198.51.100.1", "198.51.100.2"} {
			w := edgetest.Serve(e.Public, from(proxy, jsonReq(leads, lead(fmt.Sprintf("u%d@example.com", i))), "Fly-Client-IP", ip))
			if w.Code != http.StatusAccepted {
				t.Fatalf("client %s: %d, want 202", ip, w.Code)
			}
		}
		w := edgetest.Serve(e.Public, from(proxy, jsonReq(leads, lead("again@example.com")), "Fly-Client-IP", "198.51.100.1", "X-Forwarded-For", "192.0.2.99"))
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("client 198.51.100.1 again: %d, want 429", w.Code)
		}
		// A header that is not an address falls back to the socket.
		w = edgetest.Serve(e.Public, from(proxy, jsonReq(leads, lead("garbage@example.com")), "Fly-Client-IP", "not-an-ip"))
		if w.Code != http.StatusAccepted {
			t.Fatalf("garbage header: %d, want 202", w.Code)
		}
		got := ipHMACs(t, db)
		want := [][]byte{e.Hasher.IP("198.51.100.1"), e.Hasher.IP("198.51.100.2"), e.Hasher.IP("172.16.0.2")}
		if len(got) != len(want) {
			t.Fatalf("%d rows, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("row %d: ip_hmac is not the HMAC of the expected client address", i)
			}
		}
	})
	t.Run("IPv4-mapped IPv6 is the same client", func(t *testing.T) {
		e := edgetest.NewEdge(t, limited, withClock(newClock()))
		edgetest.Serve(e.Public, from("203.0.113.7:5000", jsonReq(leads, lead("a@example.com"))))
		w := edgetest.Serve(e.Public, from("[::ffff:203.0.113.7]:5000", jsonReq(leads, lead("b@example.com"))))
		if w.Code != http.StatusTooManyRequests {
			t.Errorf("the mapped form escaped the limit: %d", w.Code)
		}
	})
}

// TestNoRawIPStored submits from IPv4 and IPv6 peers and through the
// platform header, then looks for the addresses in every column of every
// table and in the raw database and WAL files. The email may appear only
// in the payload of its lead row.
func TestNoRawIPStored(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, map[string]string{"MAILSLOT_CLIENT_IP_HEADER": "Fly-Client-IP"})
	const email = "private.person@example.com"
	ips := []string{"203.0.113.7", "2001:db8::7", "198.51.100.23"}
	reqs := []*http.Request{
		from("203.0.113.7:5555", jsonReq(leads, lead(email)), "Idempotency-Key", "k1"),
		from("[2001:db8::7]:5555", jsonReq(events, `{"type":"page_view","property":"p","page":"https://site.example/"}`), "Idempotency-Key", "k2"),
		from("203.0.113.7:5555", formReq(leads, url.Values{"email": {"other@example.com"}, "property": {"p"}}), "Fly-Client-IP", "198.51.100.23"),
		from("[2001:db8::7]:5555", jsonReq(events, `{"events":[{"type":"click","property":"p"}]}`)),
	}
	for i, req := range reqs {
		if w := edgetest.Serve(e.Public, req); w.Code != http.StatusAccepted && w.Code != http.StatusSeeOther {
			t.Fatalf("request %d: %d %s", i, w.Code, w.Body)
		}
	}
	db := edgetest.OpenDB(t, e.Config.DataDir)

	tables, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	if len(names) < 3 {
		t.Fatalf("tables = %v, want at least outbox, idempotency and meta", names)
	}
	emailSeen := 0
	for _, table := range names {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			kind := ""
			for i, c := range cols {
				if c == "kind" {
					kind = fmt.Sprint(vals[i])
				}
			}
			for i, v := range vals {
				var s string
				switch v := v.(type) {
				case []byte:
					s = string(v)
				default:
					s = fmt.Sprint(v)
				}
				for _, ip := range ips {
					if strings.Contains(s, ip) {
						t.Errorf("%s.%s holds the raw IP %s", table, cols[i], ip)
					}
				}
				if strings.Contains(s, email) {
					if table == "outbox" && cols[i] == "payload" && kind == "lead" {
						emailSeen++
					} else {
						t.Errorf("%s.%s (kind %q) holds the email", table, cols[i], kind)
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if emailSeen != 1 {
		t.Errorf("the email is in %d lead payloads, want 1", emailSeen)
	}
	for _, f := range []string{outbox.FileName, outbox.FileName + "-wal"} {
		b, err := os.ReadFile(filepath.Join(e.Config.DataDir, f))
		if err != nil {
			continue
		}
		for _, ip := range ips {
			if bytes.Contains(b, []byte(ip)) {
				t.Errorf("%s holds the raw IP %s", f, ip)
			}
		}
	}
}

func TestOtherRoutes(t *testing.T) {
	t.Parallel()
	e := edgetest.NewEdge(t, nil)
	get := func(target string) *httptest.ResponseRecorder {
		return edgetest.Serve(e.Public, httptest.NewRequest(http.MethodGet, target, nil))
	}
	t.Run("unknown route", func(t *testing.T) {
		wantJSONError(t, get("/v1/nope"), http.StatusNotFound, "not_found", nil)
	})
	t.Run("wrong method", func(t *testing.T) {
		wantJSONError(t, get(leads), http.StatusMethodNotAllowed, "method_not_allowed", nil)
	})
	t.Run("client script", func(t *testing.T) {
		w := get("/v1/mailslot.js")
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") || w.Body.Len() == 0 {
			t.Errorf("%d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
		}
	})
	t.Run("thanks page escapes its input", func(t *testing.T) {
		w := get("/v1/thanks?error=" + url.QueryEscape("<script>x</script>"))
		if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("%d, body %s", w.Code, w.Body)
		}
	})
}
