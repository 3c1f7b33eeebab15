package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// powEnv gives every property of the test edge a proof of work, cheap
// enough for a loaded test machine.
var powEnv = []string{"MAILSLOT_CHALLENGE=pow", "MAILSLOT_CHALLENGE_KEY=web-test-pow-key-0123456789", "MAILSLOT_CHALLENGE_POW_MAX=20000"}

// TestChallengeSolvedByScript: with a proof of work on, mailslot.js
// fetches the challenge, solves it in the page and sends the solution
// with the sign-up, which is stored passed.
func TestChallengeSolvedByScript(t *testing.T) {
	st := startStackEnv(t, powEnv...)
	ctx := newBrowser(t)
	console := watchConsole(t, ctx)
	email := fmt.Sprintf("pow-%d@example.com", time.Now().UnixNano())
	do(t, ctx, 30*time.Second, "open the page",
		chromedp.Navigate(st.site+"/"),
		chromedp.WaitReady(chromedp.CSS("form#signup[data-mailslot-ready]")),
		chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`),
	)
	do(t, ctx, 60*time.Second, "fill in and submit",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form#signup[data-mailslot-state=success] [data-mailslot-status]`)),
	)
	if same := run(t, ctx, "check the document", chromedp.Evaluate[bool](`window.__sameDocument === true`)); !same {
		t.Error("the form was posted natively, not by the script")
	}
	leads := waitOutbox(t, st.dataDir, "the lead", func(r outboxRow) bool { return r.Kind == "lead" && r.str("email") == email })
	if len(leads) != 1 || leads[0].str("challenge") != "passed" {
		t.Fatalf("leads %+v, want one stored passed", leads)
	}
	for _, line := range console.lines() {
		if len(line) >= 9 && line[:9] == "exception" {
			t.Errorf("console: %s", line)
		}
	}
}

// TestChallengeWithoutJavaScript: a form posted with JavaScript off cannot
// solve a proof of work. With the no-JS policy hold it is stored
// unverified (and gets no mail); with refuse the visitor lands on the
// error page with error=challenge_required and nothing is stored.
func TestChallengeWithoutJavaScript(t *testing.T) {
	for _, tc := range []struct {
		policy string
		stored bool
	}{{"hold", true}, {"refuse", false}} {
		t.Run(tc.policy, func(t *testing.T) {
			st := startStackEnv(t, append(powEnv, "MAILSLOT_CHALLENGE_NO_JS="+tc.policy)...)
			ctx := newBrowser(t)
			if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
				t.Fatalf("disable JavaScript: %v", err)
			}
			email := fmt.Sprintf("nojs-%s-%d@example.com", tc.policy, time.Now().UnixNano())
			landing := "#thanks"
			if !tc.stored {
				landing = "#error-code"
			}
			do(t, ctx, 30*time.Second, "fill in and post the form",
				chromedp.Navigate(st.site+"/"),
				chromedp.SendKeys(chromedp.CSS("#email"), email),
				chromedp.Click(chromedp.CSS(`#signup button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS(landing)),
			)
			u := currentURL(t, ctx)
			if tc.stored {
				if u.Path != "/thanks.html" {
					t.Fatalf("at %s, want /thanks.html", u)
				}
				leads := waitOutbox(t, st.dataDir, "the held lead", func(r outboxRow) bool { return r.Kind == "lead" && r.str("email") == email })
				if len(leads) != 1 || leads[0].str("challenge") != "unverified" {
					t.Fatalf("leads %+v, want one stored unverified", leads)
				}
				return
			}
			if u.Path != "/error.html" || u.Query().Get("error") != "challenge_required" {
				t.Fatalf("at %s, want /error.html?error=challenge_required", u)
			}
			if shown := run(t, ctx, "read the shown code", chromedp.Text(chromedp.CSS("#error-code"))); shown != "challenge_required" {
				t.Errorf("error page shows %q", shown)
			}
			for _, r := range readOutbox(t, st.dataDir) {
				if r.Kind == "lead" && r.str("email") == email {
					t.Fatalf("the refused sign-up was stored: %s", r.Raw)
				}
			}
		})
	}
}
