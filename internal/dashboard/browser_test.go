package dashboard_test

// The dashboard in a real Chromium (/usr/bin/chromium, as web/'s tests):
// with the fixture's data, with an empty database, under a foreign Host
// (a DNS-rebinding name mapped to 127.0.0.1) and from another site's page.
// Screenshots go to $MAILSLOT_SCREENSHOT_DIR when it is set (the README's
// docs/dashboard.png is made so), else to the test's temporary directory,
// so that a test run leaves the tree as it was.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/report/reporttest"
	"github.com/mailslot/mailslot/internal/testsync"
)

const chromiumPath = "/usr/bin/chromium"

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The attacker's name resolves to the dashboard, as after DNS
		// rebinding.
		chromedp.Flag("host-resolver-rules", "MAP rebind.attacker.example 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// No deadline here: the first run binds the browser's life to its
	// context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

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

func count(t *testing.T, ctx context.Context, selector string) int {
	t.Helper()
	return run(t, ctx, "count "+selector, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+selector+"`"+`).length`))
}

func TestDashboardInChromium(t *testing.T) {
	db := pgtest.New(t)
	reporttest.LoadFixture(t, db)
	loadFleet(t, db)
	full := serve(t, db)
	empty := serve(t, pgtest.New(t))
	ctx := newBrowser(t)
	dir := os.Getenv("MAILSLOT_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shoot := func(name string) {
		t.Helper()
		png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	do(t, ctx, "render with data",
		chromedp.Navigate(full.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#signups svg polyline`)),
	)
	signups := run(t, ctx, "read sign-ups", chromedp.Text(chromedp.CSS(`#kpi-signups b`)))
	// Bars: 3 campaigns, 3 pages, 4 funnel stages, 2 nodes.
	bars := count(t, ctx, `#campaigns g.bar, #pages g.bar, #funnel g.bar, #fleet g.bar`)
	lines := count(t, ctx, `#signups polyline`)
	segments := count(t, ctx, `#consent rect.segment`)
	if signups != "11" || bars != 12 || lines != 2 || segments != 4 || count(t, ctx, `.empty`) != 0 {
		t.Errorf("with data: sign-ups %q, %d bars, %d lines, %d consent segments; want 11, 12, 2, 4 and no empty note", signups, bars, lines, segments)
	}
	shoot("dashboard.png")

	do(t, ctx, "render an empty database",
		chromedp.Navigate(empty.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#fleet .empty`)),
	)
	if s, n := run(t, ctx, "read sign-ups", chromedp.Text(chromedp.CSS(`#kpi-signups b`))), count(t, ctx, `.empty`); s != "0" || n != 6 {
		t.Errorf("empty: sign-ups %q, %d empty notes; want 0 and 6", s, n)
	}
	shoot("dashboard-empty.png")

	u, _ := url.Parse(full.URL)
	do(t, ctx, "open it under a rebound name", chromedp.Navigate("http://rebind.attacker.example:"+u.Port()+"/"))
	if body := run(t, ctx, "read the answer", chromedp.Text(chromedp.CSS(`body`))); !strings.Contains(body, "host_not_allowed") || strings.Contains(body, "Sign-ups") {
		t.Errorf("under a foreign Host the page showed %q, want the host_not_allowed refusal", body)
	}

	// Another site (another port: another origin) links to it.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><a id="go" href="%s/">dashboard</a>`, full.URL)
	}))
	defer other.Close()
	do(t, ctx, "follow another site's link",
		chromedp.Navigate(other.URL+"/"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	testsync.UntilState(t, 30*time.Second, "the dashboard's answer to the link", func() (bool, string) {
		body := run(t, ctx, "read the answer", chromedp.Evaluate[string](`location.href + " " + document.body.innerText`))
		return strings.HasPrefix(body, full.URL) && strings.Contains(body, "cross_site_request"), body
	})
}
