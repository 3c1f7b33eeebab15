package web_test

// These tests drive a real Chromium against the real edge binary and the
// example site, each on its own loopback port (so the site and the edge are
// different origins, as in production). They read the edge's SQLite outbox
// to see what was stored.
//
// Run with `go test ./web/`. Chromium must be at /usr/bin/chromium
// (`apt-get install -y chromium`; `make test` installs it). Set MAILSLOT_BIN
// to a built `mailslot` binary to skip the build in TestMain.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	_ "modernc.org/sqlite"

	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/web"
)

const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where TestScreenshots leaves its pictures; the run keeps
// them so that a person can look at them.
const screenshotDir = "testdata/screenshots"

// edgeBin is the mailslot binary under test.
var edgeBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer stopChromium()
	if bin := os.Getenv("MAILSLOT_BIN"); bin != "" {
		edgeBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "mailslot-web-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "web tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	edgeBin = filepath.Join(dir, "mailslot")
	build := exec.Command("go", "build", "-o", edgeBin, "github.com/mailslot/mailslot/cmd/mailslot")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "web tests: build cmd/mailslot: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TestFormRendersWithEdgeDown checks that the sign-up form renders whether
// the edge refuses connections or accepts them and never answers, and that
// the page loads no script that blocks rendering. The control case shows
// that the check would catch a blocking script in <head>.
func TestFormRendersWithEdgeDown(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		checkRendersWithoutEdge(t, "http://"+freeAddr(t), true)
	})
	t.Run("hanging", func(t *testing.T) {
		checkRendersWithoutEdge(t, blackHole(t), false)
	})
	t.Run("control: blocking script in head", func(t *testing.T) {
		edge := blackHole(t)
		siteURL := startSite(t, edge, func(path string, body []byte) []byte {
			if path != "/" {
				return body
			}
			tag := []byte(`<script defer src="` + edge + `/v1/mailslot.js" data-property="example-site"></script>`)
			if !bytes.Contains(body, tag) {
				t.Errorf("index.html has no deferred mailslot.js tag %s", tag) // not Fatal: this runs in the server's goroutine
			}
			body = bytes.Replace(body, tag, nil, 1)
			blocking := `<script src="` + edge + `/v1/mailslot.js"></script></head>`
			return bytes.Replace(body, []byte("</head>"), []byte(blocking), 1)
		})
		ctx := newBrowser(t)
		navigateNoWait(t, ctx, siteURL+"/")
		time.Sleep(3 * time.Second) // long enough for a page that is not blocked; see the hanging case
		if n := run(t, ctx, "count forms", chromedp.Evaluate[int](`document.querySelectorAll('form').length`)); n != 0 {
			t.Fatalf("the form rendered although a blocking script in <head> waits for a hanging edge: the check cannot tell blocking from non-blocking")
		}
	})
}

// checkRendersWithoutEdge loads the site for an edge that does not answer.
// With loads, the script's request fails fast and the page finishes loading;
// otherwise the request hangs for as long as the test runs.
func checkRendersWithoutEdge(t *testing.T, edgeURL string, loads bool) {
	siteURL := startSite(t, edgeURL, nil)
	ctx := newBrowser(t)
	console := watchConsole(t, ctx)

	start := time.Now()
	navigateNoWait(t, ctx, siteURL+"/")
	do(t, ctx, 20*time.Second, "show the sign-up form",
		chromedp.WaitVisible(chromedp.CSS("form#signup")),
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.WaitVisible(chromedp.CSS(`#signup button[type=submit]`)),
	)
	t.Logf("form visible %v after navigation", time.Since(start).Round(time.Millisecond))

	formText := run(t, ctx, "read the form", chromedp.Text(chromedp.CSS("form#signup")))
	for _, want := range []string{"Email address", "Sign up"} {
		if !strings.Contains(formText, want) {
			t.Errorf("form text %q lacks %q", formText, want)
		}
	}
	if h1 := run(t, ctx, "read the heading", chromedp.Text(chromedp.CSS("h1"))); h1 != "Field Notes" {
		t.Errorf("heading = %q, want Field Notes", h1)
	}
	// The parser got past the script tag without waiting for the edge.
	if state := run(t, ctx, "read readyState", chromedp.Evaluate[string](`document.readyState`)); state == "loading" {
		t.Errorf("document.readyState = loading after the form showed")
	}
	// Structure: nothing in <head> runs, and every external script is
	// deferred or async.
	blocking := run(t, ctx, "find blocking scripts", chromedp.Evaluate[[]string](`
		Array.from(document.scripts)
			.filter(s => s.closest('head') || (s.src && !s.defer && !s.async && s.type !== 'module'))
			.map(s => s.outerHTML)`))
	if len(blocking) > 0 {
		t.Errorf("blocking scripts: %q", blocking)
	}

	if loads {
		// Let the refused script load fail and the load event fire, so its
		// console entries are in.
		testsync.Until(t, 20*time.Second, "the load event", func() bool {
			return run(t, ctx, "read readyState", chromedp.Evaluate[string](`document.readyState`)) == "complete"
		})
	}
	time.Sleep(500 * time.Millisecond) // console events are delivered asynchronously
	if loads && !slices.ContainsFunc(console.lines(), func(l string) bool { return strings.Contains(l, "/v1/mailslot.js") }) {
		t.Errorf("the console shows no failed load of mailslot.js, so the console check below sees nothing: %q", console.lines())
	}
	for _, line := range console.lines() {
		l := strings.ToLower(line)
		if strings.Contains(l, "parser-blocking") || strings.Contains(l, "blocking") ||
			strings.Contains(l, "document.write") || strings.Contains(l, "violation") ||
			strings.HasPrefix(l, "exception") {
			t.Errorf("console: %s", line)
		}
	}
	t.Logf("console while the edge is down:\n%s", strings.Join(console.lines(), "\n"))
}

// TestSignUpWithoutJavaScript posts the plain HTML form. Without JavaScript
// nothing can copy the landing URL's UTM into the form, so a no-JS sign-up
// carries the UTM the page author wrote into its hidden fields: the test
// uses a campaign landing page (/campaign.html) whose author did that.
func TestSignUpWithoutJavaScript(t *testing.T) {
	st := startStack(t)
	ctx := newBrowser(t)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable JavaScript: %v", err)
	}
	pageURL := st.site + "/campaign.html?utm_source=newsletter&utm_medium=email&utm_campaign=spring-nojs"
	email := fmt.Sprintf("nojs-%d@example.com", time.Now().UnixNano())

	do(t, ctx, 30*time.Second, "open the campaign page", chromedp.Navigate(pageURL))
	attrs := run(t, ctx, "read the form's attributes", chromedp.Attributes(chromedp.CSS("form#signup")))
	if _, ok := attrs["data-mailslot-ready"]; ok {
		t.Fatal("mailslot.js ran although JavaScript is disabled")
	}
	do(t, ctx, 30*time.Second, "fill and submit the form",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#thanks")),
	)
	if u := currentURL(t, ctx); u.Path != "/thanks.html" {
		t.Errorf("after the post the browser is at %s, want /thanks.html", u)
	}
	leads := waitOutbox(t, st.dataDir, "the no-JS lead", func(r outboxRow) bool {
		return r.Kind == "lead" && r.str("email") == email
	})
	if len(leads) != 1 {
		t.Fatalf("%d leads for %s, want 1", len(leads), email)
	}
	lead := leads[0]
	for field, want := range map[string]string{
		"property":     "example-site",
		"consent":      "pending",
		"utm.source":   "newsletter",
		"utm.medium":   "email",
		"utm.campaign": "spring-nojs",
	} {
		if got := lead.str(field); got != want {
			t.Errorf("lead %s = %q, want %q (payload %s)", field, got, want, lead.Raw)
		}
	}

	// A bad address: the browser's own check would stop it, so switch that
	// off (through DevTools, not page JavaScript) to reach the edge.
	do(t, ctx, 30*time.Second, "submit a bad address",
		chromedp.Navigate(pageURL),
		chromedp.SetAttributeValue(chromedp.CSS("form#signup"), "novalidate", ""),
		chromedp.SendKeys(chromedp.CSS("#email"), "not-an-email"),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#error-code")),
	)
	u := currentURL(t, ctx)
	if u.Path != "/error.html" {
		t.Fatalf("after a bad post the browser is at %s, want /error.html", u)
	}
	code, field := u.Query().Get("error"), u.Query().Get("field")
	t.Logf("edge sent the browser to %s", u)
	if code == "" {
		t.Errorf("error page URL %s has no error code", u)
	}
	if field != "email" {
		t.Errorf("error page URL %s names field %q, want email", u, field)
	}
	if shown := run(t, ctx, "read the shown code", chromedp.Text(chromedp.CSS("#error-code"))); shown != code {
		t.Errorf("error page shows code %q, want %q", shown, code)
	}
	if shown := run(t, ctx, "read the shown field", chromedp.Text(chromedp.CSS("#error-field"))); shown != field {
		t.Errorf("error page shows field %q, want %q", shown, field)
	}
	for _, r := range readOutbox(t, st.dataDir) {
		if strings.Contains(r.Raw, "not-an-email") {
			t.Errorf("the rejected sign-up was stored: %s", r.Raw)
		}
	}
}

// TestSignUpWithJavaScript submits through mailslot.js: a field error and
// then a success are shown in the form, the page never navigates, and the
// lead and the page_view and form_submit events reach the outbox with the
// landing URL's UTM, which the next page's page_view still carries. No
// cookie is set.
func TestSignUpWithJavaScript(t *testing.T) {
	st := startStack(t)
	ctx := newBrowser(t)
	console := watchConsole(t, ctx)
	campaign := fmt.Sprintf("launch-%d", time.Now().UnixNano())
	email := fmt.Sprintf("js-%d@example.com", time.Now().UnixNano())
	pageURL := st.site + "/?utm_source=js-test&utm_medium=email&utm_campaign=" + campaign

	do(t, ctx, 30*time.Second, "open the page",
		chromedp.Navigate(pageURL),
		chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
		chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`),
	)
	if v := run(t, ctx, "read utm_campaign", chromedp.Value(chromedp.CSS(`#signup input[name=utm_campaign]`))); v != campaign {
		t.Errorf("hidden utm_campaign = %q, want %q from the URL", v, campaign)
	}

	do(t, ctx, 30*time.Second, "submit a bad address",
		chromedp.SetAttributeValue(chromedp.CSS("form#signup"), "novalidate", ""),
		chromedp.SendKeys(chromedp.CSS("#email"), "not-an-email"),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#email[aria-invalid=true] + .mailslot-error`)),
	)
	status := run(t, ctx, "read the status", chromedp.Text(chromedp.CSS("[data-mailslot-status]")))
	if !strings.Contains(status, "check") {
		t.Errorf("status after a bad address = %q", status)
	}
	msg := run(t, ctx, "read the field error", chromedp.Text(chromedp.CSS(".mailslot-error")))
	t.Logf("inline field error: %q; status: %q", msg, status)

	do(t, ctx, 30*time.Second, "fix the address and submit",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('email').value = ''`),
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS("#consent")),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form#signup[data-mailslot-state=success] [data-mailslot-status]`)),
	)
	status = run(t, ctx, "read the status", chromedp.Text(chromedp.CSS("[data-mailslot-status]")))
	if !strings.Contains(status, "Check your inbox") {
		t.Errorf("status after success = %q", status)
	}
	if live := run(t, ctx, "read aria-live", chromedp.AttributeValue(chromedp.CSS("[data-mailslot-status]"), "aria-live")); live.Value != "polite" {
		t.Errorf("status region aria-live = %q", live.Value)
	}
	if n := run(t, ctx, "count field errors", chromedp.Evaluate[int](`document.querySelectorAll('.mailslot-error, [aria-invalid]').length`)); n != 0 {
		t.Errorf("%d field errors left after success", n)
	}
	if u := currentURL(t, ctx); u.String() != pageURL {
		t.Errorf("the page navigated to %s", u)
	}
	if same := run(t, ctx, "check the document", chromedp.Evaluate[bool](`window.__sameDocument === true`)); !same {
		t.Error("the document was replaced: the form was posted natively")
	}

	leads := waitOutbox(t, st.dataDir, "the lead", func(r outboxRow) bool {
		return r.Kind == "lead" && r.str("email") == email
	})
	if len(leads) != 1 {
		t.Fatalf("%d leads for %s, want 1", len(leads), email)
	}
	for field, want := range map[string]string{
		"property":     "example-site",
		"consent":      "express",
		"page":         "/",
		"utm.source":   "js-test",
		"utm.medium":   "email",
		"utm.campaign": campaign,
	} {
		if got := leads[0].str(field); got != want {
			t.Errorf("lead %s = %q, want %q (payload %s)", field, got, want, leads[0].Raw)
		}
	}
	ours := func(typ string) func(outboxRow) bool {
		return func(r outboxRow) bool {
			return r.Kind == "event" && r.str("type") == typ && r.str("utm.campaign") == campaign
		}
	}
	views := waitOutbox(t, st.dataDir, "the page_view event", ours("page_view"))
	submits := waitOutbox(t, st.dataDir, "the form_submit events", func(r outboxRow) bool {
		return ours("form_submit")(r) && r.str("props.outcome") == "accepted"
	})
	if views[0].str("property") != "example-site" || views[0].str("page") != "/" {
		t.Errorf("page_view payload %s", views[0].Raw)
	}
	if submits[0].str("name") != "newsletter" {
		t.Errorf("form_submit payload %s", submits[0].Raw)
	}
	for _, r := range readOutbox(t, st.dataDir) {
		if r.Kind == "event" && strings.Contains(r.Raw, "@") {
			t.Errorf("an event carries an email address: %s", r.Raw)
		}
		if strings.Contains(r.Raw, "not-an-email") {
			t.Errorf("the rejected sign-up was stored: %s", r.Raw)
		}
	}

	// The landing UTM stays with the tab (sessionStorage) for the next page.
	do(t, ctx, 30*time.Second, "open another page", chromedp.Navigate(st.site+"/thanks.html"))
	waitOutbox(t, st.dataDir, "the second page_view with the landing UTM", func(r outboxRow) bool {
		return ours("page_view")(r) && r.str("page") == "/thanks.html"
	})
	if n := run(t, ctx, "count sessionStorage keys", chromedp.Evaluate[int](`sessionStorage.length`)); n != 1 {
		t.Errorf("sessionStorage holds %d keys, want 1 (the landing UTM)", n)
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{st.site + "/", st.edge + "/"}})
	if err != nil {
		t.Fatalf("read cookies: %v", err)
	}
	for _, c := range cookies.Cookies {
		t.Errorf("cookie set for %s: %s", c.Domain, c.Name)
	}
	for _, line := range console.lines() {
		if strings.HasPrefix(line, "exception") {
			t.Errorf("console: %s", line)
		}
	}
}

// TestFallbackToPlainPost makes mailslot.js's fetch fail, through DevTools
// interception, and checks that the form then goes as a plain HTML post and
// the lead is stored exactly once: also when the edge had stored it and only
// its answer was lost, because the plain post carries the same idempotency
// key and the same fields, so the edge replays its first answer.
func TestFallbackToPlainPost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stage fetch.RequestStage
	}{
		{"request fails before the edge", fetch.RequestStageRequest},
		{"answer lost after the edge stored the lead", fetch.RequestStageResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := startStack(t)
			ctx := newBrowser(t)
			campaign := fmt.Sprintf("fallback-%d", time.Now().UnixNano())
			email := fmt.Sprintf("fallback-%d@example.com", time.Now().UnixNano())
			do(t, ctx, 30*time.Second, "open the page",
				chromedp.Navigate(st.site+"/?utm_source=fallback-test&utm_campaign="+campaign),
				chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
			)

			paused := chromedp.Events(ctx, fetch.RequestPaused)
			failed := make(chan int64, 1) // the edge's status, at the response stage
			go func() {
				for ev, err := range paused {
					if err != nil {
						return
					}
					// Fail the script's POST, and let its CORS preflight
					// through. The plain post that follows is a document
					// request, which the pattern does not match.
					if ev.Request.Method != http.MethodPost {
						chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
						continue
					}
					chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonConnectionFailed})
					failed <- ev.ResponseStatusCode
					return
				}
			}()
			_, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{
				URLPattern: st.edge + "/v1/leads", ResourceType: network.ResourceTypeFetch, RequestStage: tc.stage,
			}}})
			if err != nil {
				t.Fatalf("intercept requests: %v", err)
			}

			do(t, ctx, 30*time.Second, "submit",
				chromedp.SendKeys(chromedp.CSS("#email"), email),
				chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS("#thanks, #error-code")),
			)
			select {
			case status := <-failed:
				t.Logf("failed the script's POST at the %s stage (edge status %d)", tc.stage, status)
			default:
				t.Fatal("the script's POST was never intercepted")
			}
			if u := currentURL(t, ctx); u.Path != "/thanks.html" {
				t.Fatalf("after the fallback post the browser is at %s, want /thanks.html", u)
			}
			leads := waitOutbox(t, st.dataDir, "the lead", func(r outboxRow) bool {
				return r.Kind == "lead" && r.str("email") == email
			})
			if got := leads[0].str("utm.campaign"); got != campaign {
				t.Errorf("lead utm.campaign = %q, want %q", got, campaign)
			}
			waitOutbox(t, st.dataDir, "the form_submit event", func(r outboxRow) bool {
				return r.Kind == "event" && r.str("type") == "form_submit" && r.str("props.outcome") == "fallback" && r.str("utm.campaign") == campaign
			})
			n := 0
			for _, r := range readOutbox(t, st.dataDir) {
				if r.Kind == "lead" && r.str("email") == email {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d leads stored for %s, want 1", n, email)
			}
		})
	}
}

// TestGlobalPrivacyControl checks that a browser sending the GPC signal gets
// no telemetry at all, while its sign-up still works.
func TestGlobalPrivacyControl(t *testing.T) {
	st := startStack(t)
	ctx := newBrowser(t)
	gpc := `Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true, configurable: true});`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: gpc}); err != nil {
		t.Fatalf("emulate GPC: %v", err)
	}
	campaign := fmt.Sprintf("gpc-%d", time.Now().UnixNano())
	email := fmt.Sprintf("gpc-%d@example.com", time.Now().UnixNano())
	do(t, ctx, 30*time.Second, "sign up with GPC on",
		chromedp.Navigate(st.site+"/?utm_source=gpc-test&utm_campaign="+campaign),
		chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form#signup[data-mailslot-state=success] [data-mailslot-status]`)),
		chromedp.Evaluate[chromedp.Void](`window.mailslot.track('gpc-custom')`),
	)
	if gpcOn := run(t, ctx, "read navigator.globalPrivacyControl", chromedp.Evaluate[bool](`navigator.globalPrivacyControl === true`)); !gpcOn {
		t.Fatal("GPC emulation did not take")
	}
	lead := waitOutbox(t, st.dataDir, "the lead", func(r outboxRow) bool {
		return r.Kind == "lead" && r.str("email") == email
	})
	if got := lead[0].str("utm.campaign"); got != campaign {
		t.Errorf("lead utm.campaign = %q, want %q", got, campaign)
	}
	// The page_view would have been sent before the sign-up; give any
	// straggler a moment.
	time.Sleep(time.Second)
	for _, r := range readOutbox(t, st.dataDir) {
		if r.Kind == "event" {
			t.Errorf("an event was stored with GPC on: %s", r.Raw)
		}
	}
}

// TestCORSRefusesOtherOrigins checks that a page outside the edge's CORS
// allowlist cannot post a sign-up with fetch, while the allowlisted site can.
func TestCORSRefusesOtherOrigins(t *testing.T) {
	st := startStack(t)
	outsider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>outsider</title><p>a site that is not on the allowlist</p>")
	}))
	t.Cleanup(outsider.Close)
	ctx := newBrowser(t)

	post := func(email string) string {
		js := fmt.Sprintf(`fetch(%q, {method: 'POST', mode: 'cors', headers: {'Content-Type': 'application/json'},
			body: JSON.stringify({email: %q, property: 'example-site'})})
			.then(r => 'resolved:' + r.status, e => 'rejected:' + e.name)`, st.edge+"/v1/leads", email)
		return run(t, ctx, "post with fetch", chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	}

	before := len(readOutbox(t, st.dataDir))
	outsiderEmail := fmt.Sprintf("outsider-%d@example.com", time.Now().UnixNano())
	do(t, ctx, 30*time.Second, "open the outsider page", chromedp.Navigate(outsider.URL+"/"))
	if got := post(outsiderEmail); !strings.HasPrefix(got, "rejected:") {
		t.Errorf("fetch from %s: %s, want a rejection", outsider.URL, got)
	}

	// The allowlisted origin, as a control: the same request goes through.
	insiderEmail := fmt.Sprintf("insider-%d@example.com", time.Now().UnixNano())
	do(t, ctx, 30*time.Second, "open the site", chromedp.Navigate(st.site+"/thanks.html"))
	if got := post(insiderEmail); got != "resolved:202" {
		t.Errorf("fetch from the allowlisted %s: %s, want resolved:202", st.site, got)
	}
	waitOutbox(t, st.dataDir, "the allowlisted lead", func(r outboxRow) bool {
		return r.Kind == "lead" && r.str("email") == insiderEmail
	})
	for _, r := range readOutbox(t, st.dataDir)[before:] {
		if strings.Contains(r.Raw, outsiderEmail) {
			t.Errorf("the outsider's sign-up was stored: %s", r.Raw)
		}
	}

	// What the browser was told at preflight.
	req, _ := http.NewRequest(http.MethodOptions, st.edge+"/v1/leads", nil)
	req.Header.Set("Origin", outsider.URL)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("preflight: %v", err)
	}
	resp.Body.Close()
	t.Logf("preflight from %s: %s, Access-Control-Allow-Origin %q", outsider.URL, resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from %s allowed: %s", outsider.URL, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestScreenshots saves pictures of the form, an inline field error, the
// inline success, the thank-you page and the error page to
// testdata/screenshots.
func TestScreenshots(t *testing.T) {
	st := startStack(t)
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t)
	shoot := func(ctx context.Context, name string) {
		t.Helper()
		png := run(t, ctx, "take "+name, chromedp.FullScreenshot(100))
		path := filepath.Join(screenshotDir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(png))
	}

	do(t, ctx, 30*time.Second, "open the form",
		chromedp.Navigate(st.site+"/?utm_source=screenshot&utm_campaign=docs"),
		chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
	)
	shoot(ctx, "form.png")
	do(t, ctx, 30*time.Second, "submit a bad address",
		chromedp.SetAttributeValue(chromedp.CSS("form#signup"), "novalidate", ""),
		chromedp.SendKeys(chromedp.CSS("#email"), "ada@"),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#email[aria-invalid=true] + .mailslot-error`)),
	)
	shoot(ctx, "inline-error.png")
	do(t, ctx, 30*time.Second, "sign up",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('email').value = ''`),
		chromedp.SendKeys(chromedp.CSS("#email"), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada"),
		chromedp.Click(chromedp.CSS("#consent")),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form#signup[data-mailslot-state=success] [data-mailslot-status]`)),
	)
	shoot(ctx, "inline-success.png")

	// A second tab without JavaScript for the pages a plain post lands on.
	nojs, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if _, err := chromedp.Call(nojs, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable JavaScript: %v", err)
	}
	do(t, nojs, 30*time.Second, "post the form without JavaScript",
		chromedp.Navigate(st.site+"/"),
		chromedp.SendKeys(chromedp.CSS("#email"), "grace@example.com"),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#thanks")),
	)
	shoot(nojs, "thanks.png")
	do(t, nojs, 30*time.Second, "post a bad address without JavaScript",
		chromedp.Navigate(st.site+"/"),
		chromedp.SetAttributeValue(chromedp.CSS("form#signup"), "novalidate", ""),
		chromedp.SendKeys(chromedp.CSS("#email"), "grace@"),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#error-code")),
	)
	shoot(nojs, "error.png")
}

// stack is a running edge and the example site pointed at it.
type stack struct {
	edge    string // edge origin
	site    string // site origin
	dataDir string // the edge's data directory
}

// startStack starts the example site and an edge that allows the site as a
// CORS origin and as a redirect host.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackEnv(t)
}

// startStackEnv is startStack with extra edge environment ("NAME=value").
func startStackEnv(t *testing.T, extraEnv ...string) *stack {
	t.Helper()
	site := httptest.NewUnstartedServer(nil)
	siteURL := "http://" + site.Listener.Addr().String()
	edgeAddr := freeAddr(t)
	st := &stack{edge: "http://" + edgeAddr, site: siteURL, dataDir: t.TempDir()}
	site.Config.Handler = siteHandler(t, st.edge, nil)
	site.Start()
	t.Cleanup(site.Close)
	startEdge(t, edgeAddr, siteURL, st.dataDir, extraEnv...)
	return st
}

// startSite serves the example site for an edge that is not started.
// rewrite, when set, may change a page's HTML.
func startSite(t *testing.T, edgeURL string, rewrite func(path string, body []byte) []byte) string {
	t.Helper()
	site := httptest.NewServer(siteHandler(t, edgeURL, rewrite))
	t.Cleanup(site.Close)
	return site.URL
}

// campaignUTM is what the author of /campaign.html wrote into its form.
var campaignUTM = [][2]string{{"source", "newsletter"}, {"medium", "email"}, {"campaign", "spring-nojs"}}

// siteHandler is web.ExampleSite plus /campaign.html: the home page with
// campaignUTM written into its hidden fields, as an author would for a
// campaign's landing page.
func siteHandler(t *testing.T, edgeURL string, rewrite func(path string, body []byte) []byte) http.Handler {
	example := web.ExampleSite(edgeURL)
	campaign := campaignPage(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		change := rewrite
		if r.URL.Path == "/campaign.html" {
			r = r.Clone(r.Context())
			r.URL.Path = "/"
			change = campaign
		}
		if change == nil {
			example.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		example.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		body := change(r.URL.Path, rec.Body.Bytes())
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

func campaignPage(t *testing.T) func(string, []byte) []byte {
	return func(path string, body []byte) []byte {
		if path != "/" {
			return body
		}
		for _, kv := range campaignUTM {
			empty := []byte(`name="utm_` + kv[0] + `" value=""`)
			if !bytes.Contains(body, empty) {
				t.Errorf("index.html has no empty utm_%s field", kv[0])
			}
			body = bytes.Replace(body, empty, []byte(`name="utm_`+kv[0]+`" value="`+kv[1]+`"`), 1)
		}
		return body
	}
}

// startEdge runs `mailslot serve` on addr until the test ends.
func startEdge(t *testing.T, addr, siteURL, dataDir string, extraEnv ...string) {
	t.Helper()
	siteHost := strings.TrimPrefix(siteURL, "http://")
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAILSLOT_") || strings.HasPrefix(kv, "DATABASE_URL=")
	})
	env = append(env,
		"MAILSLOT_ENV=development",
		"MAILSLOT_ADDR="+addr,
		"MAILSLOT_PRIVATE_ADDR="+freeAddr(t),
		"MAILSLOT_DATA_DIR="+dataDir,
		"MAILSLOT_NODE_ID=web-test",
		"MAILSLOT_CORS_ORIGINS="+siteURL,
		"MAILSLOT_REDIRECT_HOSTS="+siteHost,
		"MAILSLOT_THANKS_URL="+siteURL+"/thanks.html",
		"MAILSLOT_ERROR_URL="+siteURL+"/error.html",
		"MAILSLOT_RATE_RPS=0",
	)
	env = append(env, extraEnv...)
	logs := &testsync.Buffer{}
	cmd := exec.Command(edgeBin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s serve: %v", edgeBin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("the edge did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("edge log:\n%s", logs)
		}
	})
	testsync.UntilState(t, 60*time.Second, "the edge to be ready", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the edge exited before it was ready: %v\n%s", err, logs)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, fmt.Sprintf("%v\n%s", err, logs)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d\n%s", resp.StatusCode, logs)
	})
}

// freeAddr returns a loopback address that nothing listens on (the port was
// free a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// blackHole returns the origin of a server that accepts connections and
// never answers: an edge that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// chromium is the one browser the tests share; each test gets its own
// browser context (its own storage, like a private window) and tab. Starting
// Chromium takes seconds on a busy machine, so it starts once, on first use.
var chromium struct {
	once   sync.Once
	ctx    context.Context
	out    testsync.Buffer
	err    error
	cancel func()
}

func startChromium() {
	if _, err := os.Stat(chromiumPath); err != nil {
		chromium.err = fmt.Errorf("the browser tests need Chromium at %s: run `apt-get install -y chromium` (make test installs it): %w", chromiumPath, err)
		return
	}
	profile, err := os.MkdirTemp("", "mailslot-chromium-")
	if err != nil {
		chromium.err = err
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1000, 800),
		chromedp.CombinedOutput(&chromium.out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	chromium.ctx = ctx
	chromium.cancel = func() {
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(profile)
	}
	// No deadline here: the first Run binds the browser's life to its context.
	if err := chromedp.Do(ctx); err != nil {
		chromium.err = fmt.Errorf("start Chromium: %w\n%s", err, chromium.out.String())
	}
}

// stopChromium ends the shared browser, if it was started.
func stopChromium() {
	if chromium.cancel != nil {
		chromium.cancel()
	}
}

// newBrowser returns a context for a fresh tab in a fresh browser context,
// closed when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	chromium.once.Do(startChromium)
	if chromium.err != nil {
		t.Fatal(chromium.err)
	}
	ctx, cancelTab := chromedp.NewContext(chromium.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v\n%s", err, chromium.out.String())
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// navigateNoWait starts a navigation without waiting for the load event,
// which a hanging edge would hold back.
func navigateNoWait(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, page.Navigate, page.NavigateParams{URL: u}); err != nil {
		t.Fatalf("navigate to %s: %v", u, err)
	}
}

// do runs actions with a timeout and fails the test with what it was doing.
func do(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// run runs one action that returns a value, with a 30s timeout.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// currentURL reads the tab's URL from its history, which works with
// JavaScript disabled.
func currentURL(t *testing.T, ctx context.Context) *url.URL {
	t.Helper()
	h := run(t, ctx, "read the history", chromedp.NavigationEntries())
	u, err := url.Parse(h.Entries[h.CurrentIndex].URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// consoleLog collects what the page wrote to the console, its uncaught
// exceptions, and the browser's log entries (including violation reports).
type consoleLog struct {
	mu      sync.Mutex
	entries []string
}

func (c *consoleLog) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.entries)
}

func watchConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	// Report parser-blocking and discouraged-API violations as log entries.
	_, err := chromedp.Call(ctx, cdplog.StartViolationsReport, cdplog.StartViolationsReportParams{Config: []*cdplog.ViolationSetting{
		{Name: cdplog.ViolationSettingNameBlockedParser, Threshold: 0},
		{Name: cdplog.ViolationSettingNameDiscouragedAPIUse, Threshold: 0},
	}})
	if err != nil {
		t.Fatalf("start violation reports: %v", err)
	}
	c := &consoleLog{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			line := fmt.Sprintf("%s %s: %s", m.Type, m.Source, m.Text)
			if m.URL != "" {
				line += " (" + m.URL + ")"
			}
			c.mu.Lock()
			c.entries = append(c.entries, line)
			c.mu.Unlock()
		}
	}()
	return c
}

// outboxRow is one row of the edge's outbox, with its payload decoded.
type outboxRow struct {
	Seq     int64
	Kind    string
	Raw     string
	Payload map[string]any
}

// str returns the string at a dotted path in the payload ("utm.source"), or
// "" when there is none.
func (r outboxRow) str(path string) string {
	var v any = r.Payload
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

// readOutbox reads every row, read-only, while the edge keeps writing.
func readOutbox(t *testing.T, dataDir string) []outboxRow {
	t.Helper()
	path := filepath.Join(dataDir, "outbox.db")
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, kind, payload FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatalf("read outbox %s: %v", path, err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.Seq, &r.Kind, &r.Raw); err != nil {
			t.Fatalf("read outbox row: %v", err)
		}
		if err := json.Unmarshal([]byte(r.Raw), &r.Payload); err != nil {
			t.Fatalf("outbox row %d payload is not JSON: %v: %s", r.Seq, err, r.Raw)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

// waitOutbox polls the outbox until some row matches, for up to 30s, and
// returns the matching rows.
func waitOutbox(t *testing.T, dataDir, what string, match func(outboxRow) bool) []outboxRow {
	t.Helper()
	var all, found []outboxRow
	if ok, _ := testsync.Within(30*time.Second, func() (bool, string) {
		all, found = readOutbox(t, dataDir), nil
		for _, r := range all {
			if match(r) {
				found = append(found, r)
			}
		}
		return len(found) > 0, ""
	}); ok {
		return found
	}
	var b strings.Builder
	for _, r := range all {
		fmt.Fprintf(&b, "  %d %s %s\n", r.Seq, r.Kind, r.Raw)
	}
	t.Fatalf("%s did not reach the outbox within 30s; it holds:\n%s", what, b.String())
	return nil
}
