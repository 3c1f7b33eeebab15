package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/dashboard"
	"github.com/mailslot/mailslot/internal/hostguard"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report/reporttest"
)

// loadFleet records two edges' sync state: one synced half a minute ago,
// one an hour ago (stale).
func loadFleet(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	if _, err := db.Exec(context.Background(), `
		INSERT INTO mailslot.nodes (node_id, region, last_seq, rows_synced, last_sync_at)
		VALUES ('edge-yyz-1', 'yyz', 120, 118, now() - interval '30 seconds'),
		       ('edge-fra-1', 'fra', 5, 5, now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
}

// serve runs the dashboard as mailslotctl does: behind the host guard.
func serve(t *testing.T, db *pgxpool.Pool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(hostguard.New().Wrap(&dashboard.Handler{DB: db}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// bars reads the bars of one chart section as label=value pairs.
func bars(t *testing.T, html, section string) []string {
	t.Helper()
	start := strings.Index(html, `<section id="`+section+`"`)
	if start < 0 {
		t.Fatalf("no section %s", section)
	}
	end := strings.Index(html[start:], "</section>")
	var out []string
	for _, m := range regexp.MustCompile(`data-label="([^"]*)" data-value="([^"]*)"`).FindAllStringSubmatch(html[start:start+end], -1) {
		out = append(out, m[1]+"="+m[2])
	}
	return out
}

// TestDashboardNumbers checks the page against the report fixture's
// hand-computed numbers (internal/report's tests): within the last 30
// days, 15 page views, 6 form submits, 11 sign-ups of which 4 are
// confirmed now.
func TestDashboardNumbers(t *testing.T) {
	db := pgtest.New(t)
	reporttest.LoadFixture(t, db)
	loadFleet(t, db)
	// A page name from the public that tries to be markup.
	reporttest.InsertLead(t, db, reporttest.Lead{Property: "evil.example", Email: "x@evil.example", Page: `/<script>alert(1)</script>`,
		Basis: "pending", FirstSeen: time.Now().UTC().Add(-time.Hour)})
	srv := serve(t, db)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	code, html := get(t, req)
	if code != http.StatusOK {
		t.Fatalf("GET / = %d\n%s", code, html)
	}
	for _, kpi := range []string{`id="kpi-page-views"><b>15</b>`, `id="kpi-form-submits"><b>6</b>`, `id="kpi-signups"><b>12</b>`, `id="kpi-confirmed"><b>4</b>`} {
		if !strings.Contains(html, kpi) {
			t.Errorf("page lacks %s", kpi)
		}
	}
	if strings.Contains(html, "<script>") {
		t.Error("a page name was rendered as markup")
	}
	tests := []struct {
		section string
		want    []string
	}{
		{"campaigns", []string{"(no campaign)=8", "ads / cpc / summer=2", "news / email / spring=2"}},
		{"pages", []string{"shop.example /pricing=7", "shop.example /=3", "blog.example /post=1", "evil.example /&lt;script&gt;alert(1)&lt;/script&gt;=1"}},
		{"funnel", []string{"page views=15", "form submits=6", "sign-ups=12", "confirmed=4"}},
		// confirmed: ann, fay, ivy, eve (suppressed later); unconfirmed:
		// dan, gus, hal, kit; pending: bob, joy and the evil one;
		// withdrawn: cat.
		{"consent", []string{"confirmed=4", "unconfirmed (express or implied)=4", "pending confirmation=3", "withdrawn=1"}},
		{"fleet", []string{"edge-yyz-1 (yyz)=118", "edge-fra-1 (fra)=5"}},
	}
	for _, tt := range tests {
		if got := bars(t, html, tt.section); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s bars = %q, want %q", tt.section, got, tt.want)
		}
	}
	if !regexp.MustCompile(`data-node="edge-fra-1">.*class="state-stale">stale<`).MatchString(html) ||
		!regexp.MustCompile(`data-node="edge-yyz-1">.*class="state-syncing">syncing<`).MatchString(html) {
		t.Error("the fleet table does not mark edge-fra-1 stale and edge-yyz-1 syncing")
	}

	// One property, and a range that holds only D2 (three days ago).
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/?property=shop.example&days=4", nil)
	if code, html = get(t, req); code != http.StatusOK {
		t.Fatalf("GET one property = %d", code)
	}
	if got := bars(t, html, "funnel"); strings.Join(got, ",") != "page views=4,form submits=3,sign-ups=5,confirmed=2" {
		t.Errorf("shop, last 4 days: funnel %q", got)
	}
}

func TestDashboardEmpty(t *testing.T) {
	srv := serve(t, pgtest.New(t))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	code, html := get(t, req)
	if code != http.StatusOK {
		t.Fatalf("GET / on an empty database = %d\n%s", code, html)
	}
	if n := strings.Count(html, `class="empty"`); n != 6 {
		t.Errorf("%d empty notes, want 6 (five charts and the fleet)", n)
	}
	if !strings.Contains(html, `id="kpi-signups"><b>0</b>`) {
		t.Error("no zero sign-ups")
	}
}

func TestDashboardRefuses(t *testing.T) {
	srv := serve(t, pgtest.New(t))
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		host   string
		code   int
		body   string
	}{
		{"a foreign Host", "GET", "/", nil, "dashboard.attacker.example", http.StatusForbidden, "host_not_allowed"},
		{"a cross-site request", "GET", "/", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", http.StatusForbidden, "cross_site_request"},
		{"a request with an Origin", "GET", "/", map[string]string{"Origin": "http://attacker.example"}, "", http.StatusForbidden, "cross_site_request"},
		{"a POST", "POST", "/", nil, "", http.StatusMethodNotAllowed, "method not allowed"},
		{"another path", "GET", "/admin", nil, "", http.StatusNotFound, "not found"},
		{"bad days", "GET", "/?days=forever", nil, "", http.StatusBadRequest, "days"},
		{"typed into the address bar", "GET", "/", map[string]string{"Sec-Fetch-Site": "none"}, "localhost", http.StatusOK, "mailslot dashboard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			code, body := get(t, req)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("= %d %q, want %d with %q", code, body, tt.code, tt.body)
			}
		})
	}
}

// TestDashboardAsReportingRole renders the page as a login in
// mailslot_reporting, which reads the report views and nothing else: the
// charts show, and the fleet says why it cannot.
func TestDashboardAsReportingRole(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	owner := pgtest.Pool(t, dbURL)
	reporttest.LoadFixture(t, owner)
	loadFleet(t, owner)
	ctx := context.Background()
	role := fmt.Sprintf("dash_%d", time.Now().UnixNano())
	if _, err := owner.Exec(ctx, `CREATE ROLE `+role+` LOGIN IN ROLE mailslot_reporting`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = owner.Exec(context.Background(), `DROP ROLE IF EXISTS `+role) })
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	reader := pgtest.Pool(t, u.String())
	if _, err := reader.Exec(ctx, `SELECT 1 FROM mailslot.leads LIMIT 1`); err == nil {
		t.Fatal("the reporting role can read mailslot.leads")
	}
	srv := serve(t, reader)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	code, html := get(t, req)
	if code != http.StatusOK || !strings.Contains(html, `id="kpi-signups"><b>11</b>`) || !strings.Contains(html, `id="fleet-note"`) {
		t.Errorf("as the reporting role: %d\n%s", code, html)
	}
}
