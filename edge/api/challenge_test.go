package api_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/api"
	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/challengetest"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/edgetest"
)

const powKey = "test-pow-key-0123456789abcdef"

// chalEdge is a test edge whose properties use challenges: "ts"
// Turnstile, "hc" hCaptcha, "pow" and "pow-refuse" proof of work (the
// latter refusing no-JS forms); "open" has none.
type chalEdge struct {
	*edgetest.Edge
	db        *sql.DB
	turnstile *challengetest.Siteverify
	hcaptcha  *challengetest.Siteverify
	pow       *challenge.PoW
	pol       *policy.Policy
	now       time.Time
}

func newChalEdge(t *testing.T) *chalEdge {
	t.Helper()
	ce := &chalEdge{
		turnstile: challengetest.NewTurnstile(t, "ts-secret"),
		hcaptcha:  challengetest.NewHCaptcha(t, "hc-secret"),
		now:       time.Now().UTC(),
	}
	var err error
	if ce.pow, err = challenge.NewPoW(challenge.PoWConfig{Key: []byte(powKey), MaxNumber: 5000, Lifetime: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ce.pol, err = policy.New(policy.Options{PoW: ce.pow, Timeout: 300 * time.Millisecond,
		TurnstileURL: ce.turnstile.URL, HCaptchaURL: ce.hcaptcha.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.pol.Replace([]policy.Setting{
		{Property: "ts", Kind: challenge.KindTurnstile, Secret: "ts-secret", Hostnames: []string{challengetest.Hostname}, Action: challengetest.Action},
		{Property: "hc", Kind: challenge.KindHCaptcha, Secret: "hc-secret", Hostnames: []string{challengetest.Hostname}},
		{Property: "pow", Kind: challenge.KindPoW},
		{Property: "pow-refuse", Kind: challenge.KindPoW, NoJS: policy.Refuse},
	}, ce.now); err != nil {
		t.Fatal(err)
	}
	ce.Edge = edgetest.NewEdge(t, nil, func(o *api.Options) {
		o.Challenges = ce.pol
		o.Now = func() time.Time { return ce.now }
	})
	ce.db = edgetest.OpenDB(t, ce.Config.DataDir)
	return ce
}

func chalLead(property, email string, extra map[string]string) string {
	m := map[string]string{"email": email, "property": property}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// storedVerdict returns the challenge member of the lead stored for
// email, and whether one was stored.
func (ce *chalEdge) storedVerdict(t *testing.T, email string) (string, bool) {
	t.Helper()
	for _, p := range edgetest.Payloads(t, ce.db, mailslot.KindLead) {
		if p["email"] == email {
			v, _ := p["challenge"].(string)
			return v, true
		}
	}
	return "", false
}

func wantChallengeRefused(t *testing.T, w *httptest.ResponseRecorder, code string) {
	t.Helper()
	if w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", w.Code, w.Body)
	}
	var body struct {
		Error  string            `json:"error"`
		Fields map[string]string `json:"fields"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != "invalid_fields" || body.Fields["challenge"] != code {
		t.Fatalf("body %s, want invalid_fields with challenge: %s", w.Body, code)
	}
}

// TestSiteverifyThroughHandler posts sign-ups with Turnstile and hCaptcha
// tokens that the fake providers answer in each documented way.
func TestSiteverifyThroughHandler(t *testing.T) {
	ce := newChalEdge(t)
	type outcome int
	const (
		stored outcome = iota
		refused
	)
	for _, tc := range []struct {
		property string
		field    string
		fake     *challengetest.Siteverify
		outcome  challengetest.Outcome
		want     outcome
		verdict  string
	}{
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.Success, stored, "passed"},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.InvalidInput, refused, ""},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.TimeoutOrDuplicate, refused, ""},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.WrongHostname, refused, ""},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.WrongAction, refused, ""},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.ServerError, stored, "unverified"},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.Hang, stored, "unverified"},
		{"ts", "cf-turnstile-response", ce.turnstile, challengetest.BadJSON, stored, "unverified"},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.Success, stored, "passed"},
		{"hc", "g-recaptcha-response", ce.hcaptcha, challengetest.Success, stored, "passed"},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.InvalidInput, refused, ""},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.TimeoutOrDuplicate, refused, ""},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.WrongHostname, refused, ""},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.ServerError, stored, "unverified"},
		{"hc", "h-captcha-response", ce.hcaptcha, challengetest.Hang, stored, "unverified"},
	} {
		t.Run(tc.property+"/"+tc.field+"/"+tc.outcome.String(), func(t *testing.T) {
			email := strings.ReplaceAll(tc.property+"-"+tc.field+"-"+tc.outcome.String(), " ", "") + "@example.com"
			w := edgetest.PostJSON(ce.Public, leads, chalLead(tc.property, email, map[string]string{tc.field: tc.fake.Issue(tc.outcome)}))
			got, ok := ce.storedVerdict(t, email)
			switch tc.want {
			case stored:
				if w.Code != http.StatusAccepted {
					t.Fatalf("status %d, want 202: %s", w.Code, w.Body)
				}
				if !ok || got != tc.verdict {
					t.Fatalf("stored %v with verdict %q, want %q", ok, got, tc.verdict)
				}
			case refused:
				wantChallengeRefused(t, w, "invalid")
				if ok {
					t.Fatal("a refused sign-up was stored")
				}
			}
		})
	}

	// Unreachable: a verifier nobody answers for.
	t.Run("unreachable", func(t *testing.T) {
		pol, err := policy.New(policy.Options{TurnstileURL: challengetest.Unreachable(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := pol.Replace([]policy.Setting{{Property: "ts", Kind: challenge.KindTurnstile, Secret: "x", Hostnames: []string{"site.example"}}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		e := edgetest.NewEdge(t, nil, func(o *api.Options) { o.Challenges = pol })
		w := edgetest.PostJSON(e.Public, leads, chalLead("ts", "down@example.com", map[string]string{"cf-turnstile-response": "0.token"}))
		if w.Code != http.StatusAccepted {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		p := edgetest.Payloads(t, edgetest.OpenDB(t, e.Config.DataDir), mailslot.KindLead)
		if len(p) != 1 || p[0]["challenge"] != "unverified" {
			t.Fatalf("stored %v", p)
		}
		if st := pol.Status(); st.Verdicts["ts"].Unverified != 1 {
			t.Fatalf("counts %+v", st.Verdicts)
		}
	})

	// The secret and the token reached the provider; no client IP did.
	for _, r := range ce.turnstile.Requests() {
		if r.Form.Get("secret") != "ts-secret" || r.Form.Get("response") == "" || r.Form.Has("remoteip") {
			t.Errorf("siteverify request %v", r.Form)
		}
		if _, err := uuidParse(r.Form.Get("idempotency_key")); err != nil {
			t.Errorf("idempotency_key %q: %v", r.Form.Get("idempotency_key"), err)
		}
	}
	st := ce.pol.Status()
	if c := st.Verdicts["ts"]; c.Passed != 1 || c.Failed != 4 || c.Unverified != 3 {
		t.Errorf("ts counts %+v", c)
	}
}

func uuidParse(s string) (string, error) {
	if len(s) != 36 || strings.Count(s, "-") != 4 {
		return "", &url.Error{Op: "parse uuid", URL: s}
	}
	return s, nil
}

// TestChallengeMissing: a JSON sign-up without a token is refused; a form
// without one (JavaScript off) is held unverified or refused, per
// property.
func TestChallengeMissing(t *testing.T) {
	ce := newChalEdge(t)
	wantChallengeRefused(t, edgetest.PostJSON(ce.Public, leads, chalLead("ts", "json@example.com", nil)), "required")

	w := edgetest.PostForm(ce.Public, leads, url.Values{"email": {"held@example.com"}, "property": {"pow"}})
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), edgetest.ThanksURL) {
		t.Fatalf("hold: %d %s", w.Code, w.Header().Get("Location"))
	}
	if v, ok := ce.storedVerdict(t, "held@example.com"); !ok || v != "unverified" {
		t.Fatalf("held sign-up stored %v verdict %q", ok, v)
	}

	w = edgetest.PostForm(ce.Public, leads, url.Values{"email": {"refused@example.com"}, "property": {"pow-refuse"}})
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc.String(), edgetest.ErrorURL) || loc.Query().Get("error") != "challenge_required" {
		t.Fatalf("refuse: %d %s", w.Code, loc)
	}
	if _, ok := ce.storedVerdict(t, "refused@example.com"); ok {
		t.Fatal("a refused no-JS sign-up was stored")
	}

	// A form whose widget token is refused: 303 with the field and reason.
	w = edgetest.PostForm(ce.Public, leads, url.Values{"email": {"bad@example.com"}, "property": {"ts"},
		"cf-turnstile-response": {ce.turnstile.Issue(challengetest.InvalidInput)}})
	loc, _ = url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || loc.Query().Get("field") != "challenge" || loc.Query().Get("reason") != "invalid" {
		t.Fatalf("refused form: %d %s", w.Code, loc)
	}
	// A property without a challenge takes sign-ups as before.
	if w := edgetest.PostJSON(ce.Public, leads, chalLead("open", "open@example.com", nil)); w.Code != http.StatusAccepted {
		t.Fatalf("no challenge: %d %s", w.Code, w.Body)
	}
	if v, ok := ce.storedVerdict(t, "open@example.com"); !ok || v != "" {
		t.Fatalf("no-challenge sign-up stored %v verdict %q", ok, v)
	}
	// Tokens are validated like any field.
	w = edgetest.PostJSON(ce.Public, leads, chalLead("ts", "long@example.com", map[string]string{"cf-turnstile-response": strings.Repeat("a", 2049)}))
	if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), `"cf-turnstile-response":"too_long"`) {
		t.Fatalf("long token: %d %s", w.Code, w.Body)
	}
}

// getChallenge fetches and decodes GET /v1/challenge.
func getChallenge(t *testing.T, h http.Handler, property string) (*httptest.ResponseRecorder, challenge.Challenge) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v1/challenge?property="+url.QueryEscape(property), nil)
	req.Header.Set("Origin", edgetest.Origin)
	w := edgetest.Serve(h, req)
	var c challenge.Challenge
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
			t.Fatalf("decode challenge %s: %v", w.Body, err)
		}
	}
	return w, c
}

// TestPoWThroughHandler issues a challenge, solves it as the widget does,
// and posts it: accepted once, refused when replayed, tampered with or
// expired; a client's retry of the same sign-up is answered as the first.
func TestPoWThroughHandler(t *testing.T) {
	ce := newChalEdge(t)
	w, c := getChallenge(t, ce.Public, "pow")
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Access-Control-Allow-Origin") != edgetest.Origin {
		t.Fatalf("GET /v1/challenge: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if c.Algorithm != "SHA-256" || c.MaxNumber != 5000 || !strings.Contains(w.Body.String(), `"kind":"pow"`) {
		t.Fatalf("challenge %s", w.Body)
	}
	solved := challengetest.MustSolve(t, c)

	w = edgetest.PostJSON(ce.Public, leads, chalLead("pow", "pow@example.com", map[string]string{"altcha": solved.Encode()}), "Idempotency-Key", "k-1")
	if w.Code != http.StatusAccepted {
		t.Fatalf("solved: %d %s", w.Code, w.Body)
	}
	if v, _ := ce.storedVerdict(t, "pow@example.com"); v != "passed" {
		t.Fatalf("verdict %q", v)
	}
	// The client retries the same sign-up (its answer was lost).
	w = edgetest.PostJSON(ce.Public, leads, chalLead("pow", "pow@example.com", map[string]string{"altcha": solved.Encode()}), "Idempotency-Key", "k-1")
	if w.Code != http.StatusAccepted || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// Another sign-up with the same solution is a replay.
	wantChallengeRefused(t, edgetest.PostJSON(ce.Public, leads, chalLead("pow", "replay@example.com", map[string]string{"altcha": solved.Encode()})), "invalid")

	_, c2 := getChallenge(t, ce.Public, "pow")
	tampered := challengetest.MustSolve(t, c2)
	tampered.Number++
	wantChallengeRefused(t, edgetest.PostJSON(ce.Public, leads, chalLead("pow", "tampered@example.com", map[string]string{"altcha": tampered.Encode()})), "invalid")
	other := challengetest.MustSolve(t, c2)
	wantChallengeRefused(t, edgetest.PostJSON(ce.Public, leads, chalLead("pow-refuse", "property@example.com", map[string]string{"altcha": other.Encode()})), "invalid")

	_, c3 := getChallenge(t, ce.Public, "pow")
	late := challengetest.MustSolve(t, c3)
	ce.now = ce.now.Add(2 * time.Minute)
	wantChallengeRefused(t, edgetest.PostJSON(ce.Public, leads, chalLead("pow", "late@example.com", map[string]string{"altcha": late.Encode()})), "invalid")

	// A form post that carries the solution (mailslot.js's native
	// fallback) is verified like JSON.
	_, c4 := getChallenge(t, ce.Public, "pow")
	w = edgetest.PostForm(ce.Public, leads, url.Values{"email": {"form@example.com"}, "property": {"pow"}, "altcha": {challengetest.MustSolve(t, c4).Encode()}})
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), edgetest.ThanksURL) {
		t.Fatalf("form with solution: %d %s", w.Code, w.Header().Get("Location"))
	}
	if v, _ := ce.storedVerdict(t, "form@example.com"); v != "passed" {
		t.Fatalf("form verdict %q", v)
	}

	counts := ce.pol.Status().Verdicts
	if c := counts["pow"]; c.Passed != 3 || c.Replayed != 1 || c.Failed != 2 {
		t.Errorf("pow counts %+v", c)
	}

	// Other kinds and bad properties.
	if w, _ := getChallenge(t, ce.Public, "ts"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"kind":"turnstile"`) {
		t.Errorf("ts: %d %s", w.Code, w.Body)
	}
	if w, _ := getChallenge(t, ce.Public, "open"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"kind":"none"`) {
		t.Errorf("open: %d %s", w.Code, w.Body)
	}
	// A property no sign-up could name is a field error, like any other
	// (invalid_fields, 422 in the error table).
	if w, _ := getChallenge(t, ce.Public, "a b"); w.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(w.Body.String(), `"property":"invalid"`) {
		t.Errorf("bad property: %d %s; want 422 invalid_fields naming property", w.Code, w.Body)
	}
}

// TestRecheckPassesUnverified: Turnstile answers 5xx at the sign-up and
// success at the re-check; the re-check's verdict row reaches the outbox.
func TestRecheckPassesUnverified(t *testing.T) {
	defer api.SetRecheckDelays(10*time.Millisecond, 10*time.Millisecond)()
	ce := newChalEdge(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ce.Server.Rechecker().Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	tok := ce.turnstile.Issue(challengetest.ServerError, challengetest.Success)
	w := edgetest.PostJSON(ce.Public, leads, chalLead("ts", "later@example.com", map[string]string{"cf-turnstile-response": tok}), "Idempotency-Key", "k-9")
	if w.Code != http.StatusAccepted {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	var id string
	json.Unmarshal(w.Body.Bytes(), &struct{ ID *string }{&id})
	deadline := time.Now().Add(10 * time.Second)
	for edgetest.CountKind(t, ce.db, mailslot.KindChallenge) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no verdict row within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := edgetest.Payloads(t, ce.db, mailslot.KindChallenge)
	if len(p) != 1 || p[0]["verdict"] != "passed" || p[0]["submission"] != id || p[0]["property"] != "ts" {
		t.Fatalf("verdict rows %v (lead %s)", p, id)
	}
	reqs := ce.turnstile.Requests()
	if len(reqs) != 2 || reqs[0].Form.Get("idempotency_key") != reqs[1].Form.Get("idempotency_key") {
		t.Fatalf("the re-check did not reuse the idempotency key: %v", reqs)
	}
	if c := ce.pol.Status().Verdicts["ts"]; c.RecheckPassed != 1 || c.Unverified != 1 {
		t.Fatalf("counts %+v", c)
	}
}
