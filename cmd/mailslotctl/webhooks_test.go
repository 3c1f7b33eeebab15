package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/stdwebhook/stdwebhooktest"
	"github.com/mailslot/mailslot/internal/token"
	"github.com/mailslot/mailslot/sync/webhook"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// Webhooks end to end: subscriptions added with the CLI, a real edge
// (package edge, in this process) taking sign-ups and link clicks over
// HTTP, its sync writing events into Postgres 18 and its deliverer POSTing
// them to a real receiver on loopback, whose signatures the official
// Standard Webhooks library verifies.

const (
	hookProperty = "shop.example"
	hookAnn      = "ann.hooks@example.com"
	hookErin     = "erin.hooks@example.com"
)

// hookEnv is an operator's environment for a development fleet that
// delivers to loopback receivers.
func hookEnv(dbURL string) map[string]string {
	env := privEnv(dbURL)
	env["MAILSLOT_WEBHOOK_ALLOW_PRIVATE"] = "true"
	return env
}

// hookNode runs an edge syncing into dbURL and delivering webhooks to
// loopback receivers; it returns its public and private base URLs.
func hookNode(t *testing.T, dbURL string) (public, private string) {
	t.Helper()
	cfg := edgetest.Config(t, map[string]string{
		"MAILSLOT_NODE_ID": "hooks-edge", "DATABASE_URL": dbURL,
		"MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_SYNC_INTERVAL": "20ms", "MAILSLOT_TOMBSTONE_INTERVAL": "50ms",
		"MAILSLOT_WEBHOOK_ALLOW_PRIVATE": "true", "MAILSLOT_WEBHOOK_POLL_INTERVAL": "20ms",
	})
	n, err := edge.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node run: %v", err)
		}
	})
	return "http://" + n.Addr(), "http://" + n.PrivateAddr()
}

// addHook runs `webhooks add` and returns the id and secret it printed.
func addHook(t *testing.T, env map[string]string, args ...string) (id, secret string) {
	t.Helper()
	out, errOut, err := privCtl(t, env, append([]string{"webhooks", "add"}, args...)...)
	if err != nil {
		t.Fatalf("webhooks add: %v: %s", err, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "subscription "); ok {
			id = v
		}
		if v, ok := strings.CutPrefix(line, "secret "); ok {
			secret = v
		}
	}
	if id == "" || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhooks add printed no id and secret:\n%s", out)
	}
	return id, secret
}

// waitRequest waits until the receiver has a request that match accepts,
// and returns it.
func waitRequest(t *testing.T, rc *webhooktest.Receiver, what string, match func(webhooktest.Request) bool) webhooktest.Request {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		changed := rc.Changed()
		for _, r := range rc.Requests() {
			if match(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the receiver got no %s in 30s; it got %d requests", what, len(rc.Requests()))
		}
	}
}

func accepted(typ string, email string) func(webhooktest.Request) bool {
	return func(r webhooktest.Request) bool {
		return r.Type == typ && r.Status == http.StatusNoContent && (email == "" || bytes.Contains(r.Body, []byte(`"`+email+`"`)))
	}
}

// follow POSTs a signed link as its page's button does.
func follow(t *testing.T, env map[string]string, public, purpose, email string) {
	t.Helper()
	out, errOut, err := privCtl(t, env, "links", "--json", "--property", hookProperty, "--public-url", public, email)
	if err != nil {
		t.Fatalf("links: %v: %s", err, errOut)
	}
	var links []struct{ Purpose, URL string }
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Purpose == purpose {
			resp, err := http.Post(l.URL, "application/x-www-form-urlencoded", nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %s link: %d %s", purpose, resp.StatusCode, b)
			}
			return
		}
	}
	t.Fatalf("links printed no %s link: %s", purpose, out)
}

func verify(t *testing.T, secret string, r webhooktest.Request) {
	t.Helper()
	if err := stdwebhooktest.Verify(t, secret, r.ID, r.Timestamp, r.Signature, r.Body); err != nil {
		t.Errorf("the standardwebhooks library refused the %s delivery: %v", r.Type, err)
	}
}

func TestWebhooksEndToEnd(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := hookEnv(dbURL)
	// Erin's lead.created finds the receiver refusing it (503): it is
	// still waiting for its retry when Erin is erased.
	rc := webhooktest.New(t, func(r webhooktest.Request) int {
		if r.Type == string(webhook.LeadCreated) && bytes.Contains(r.Body, []byte(hookErin)) {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	id, secret := addHook(t, env, "--url", rc.URL+"/in?token=s3cret", "--events", "lead.created,lead.confirmed,lead.unsubscribed,lead.erased")
	public, private := hookNode(t, dbURL)

	// Sign-up → lead.created, signed so that the official library accepts it.
	code, body := privPost(t, public+"/v1/leads", `{"email":"`+hookAnn+`","property":"`+hookProperty+`","consent":"pending","name":"Ann"}`)
	if code != http.StatusAccepted {
		t.Fatalf("sign-up: %d %s", code, body)
	}
	created := waitRequest(t, rc, "lead.created for Ann", accepted("lead.created", hookAnn))
	verify(t, secret, created)
	d := data(t, created.Body)
	if d["name"] != "Ann" || d["consent"] != "pending" || d["property"] != hookProperty || d["id"] != created.LeadID {
		t.Errorf("lead.created data = %v", d)
	}

	// Confirm link → lead.confirmed; unsubscribe link → lead.unsubscribed.
	follow(t, env, public, token.Confirm, hookAnn)
	confirmed := waitRequest(t, rc, "lead.confirmed", accepted("lead.confirmed", hookAnn))
	verify(t, secret, confirmed)
	if d := data(t, confirmed.Body); d["consent"] != "express" || d["id"] != created.LeadID {
		t.Errorf("lead.confirmed data = %v", d)
	}
	follow(t, env, public, token.Unsubscribe, hookAnn)
	unsub := waitRequest(t, rc, "lead.unsubscribed", accepted("lead.unsubscribed", hookAnn))
	verify(t, secret, unsub)
	if d := data(t, unsub.Body); d["reason"] != "withdrawn" || d["id"] != created.LeadID {
		t.Errorf("lead.unsubscribed data = %v", d)
	}

	// Erasure with a lead.created still to deliver: the address is never
	// sent after it, and the receiver is told to erase the lead.
	if code, body := privPost(t, public+"/v1/leads", `{"email":"`+hookErin+`","property":"`+hookProperty+`","consent":"express"}`); code != http.StatusAccepted {
		t.Fatalf("sign-up: %d %s", code, body)
	}
	refused := waitRequest(t, rc, "Erin's refused lead.created", func(r webhooktest.Request) bool {
		return r.Type == "lead.created" && r.Status == http.StatusServiceUnavailable
	})
	if out, errOut, err := privCtl(t, env, "erase", hookErin); err != nil {
		t.Fatalf("erase: %v: %s\n%s", err, errOut, out)
	}
	before := len(rc.Requests())
	erased := waitRequest(t, rc, "lead.erased", func(r webhooktest.Request) bool { return r.Type == "lead.erased" && r.Status == http.StatusNoContent })
	verify(t, secret, erased)
	if erased.LeadID != refused.LeadID {
		t.Errorf("lead.erased names %s, want Erin's lead %s", erased.LeadID, refused.LeadID)
	}
	if bytes.Contains(erased.Body, []byte("@")) {
		t.Errorf("lead.erased carries an address: %s", erased.Body)
	}
	for _, r := range rc.Requests()[before:] {
		if bytes.Contains(r.Body, []byte(hookErin)) {
			t.Errorf("Erin's address was sent after the erasure: %s %s", r.Type, r.Body)
		}
	}
	pool := pgtest.Pool(t, dbURL)
	if n := count(t, pool, `SELECT count(*) FROM mailslot.webhook_deliveries d JOIN mailslot.webhook_events e ON e.id = d.event_id
		WHERE e.type = 'lead.created' AND e.lead_public_id = $1 AND d.state = 'cancelled' AND e.payload ? 'email' = false`, refused.LeadID); n != 1 {
		t.Errorf("Erin's lead.created is not cancelled and scrubbed (%d rows)", n)
	}

	// `erasures` shows the downstream proof, in text and in JSON.
	out, _, err := privCtl(t, env, "erasures")
	if err != nil {
		t.Fatalf("erasures: %v", err)
	}
	if !strings.Contains(out, "lead.erased sent downstream (1 deliveries)") || !strings.Contains(out, refused.LeadID) ||
		!strings.Contains(out, "delivered") || !strings.Contains(out, rc.URL+"/in") || strings.Contains(out, "s3cret") {
		t.Errorf("erasures output lacks the delivery record (or shows the receiver's token):\n%s", out)
	}
	out, _, err = privCtl(t, env, "erasures", "--json")
	if err != nil {
		t.Fatalf("erasures --json: %v", err)
	}
	var list []struct {
		Webhooks []webhook.ErasureDelivery `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || len(list[0].Webhooks) != 1 {
		t.Fatalf("erasures --json = %s (%v)", out, err)
	}
	rec := list[0].Webhooks[0]
	if rec.State != "delivered" || rec.LastStatus == nil || *rec.LastStatus != http.StatusNoContent || rec.Attempts != 1 ||
		rec.DeliveredAt == nil || rec.SubscriptionID.String() != id || rec.LeadPublicID.String() != refused.LeadID {
		t.Errorf("erasure record = %+v", rec)
	}

	// `export` of the erased address carries the same record.
	out, _, err = privCtl(t, env, "export", hookErin)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	var doc struct {
		Erasures []map[string]any `json:"webhook_erasure_deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Erasures) != 1 || doc.Erasures[0]["state"] != "delivered" {
		t.Errorf("export's webhook_erasure_deliveries = %v (%v)", doc.Erasures, err)
	}
	// Ann's export says what was sent about her, and to whom.
	out, _, err = privCtl(t, env, "export", hookAnn)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	var annDoc struct {
		Sent []map[string]any `json:"webhook_deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &annDoc); err != nil || len(annDoc.Sent) != 3 {
		t.Fatalf("Ann's export lists %d webhook deliveries (%v), want 3", len(annDoc.Sent), err)
	}
	for _, s := range annDoc.Sent {
		if s["state"] != "delivered" || s["receiver"] != rc.URL+"/in" {
			t.Errorf("Ann's export delivery = %v", s)
		}
	}

	// Status everywhere: the edge's /v1/sync/status, /metrics, the CLI.
	var st struct {
		Webhooks *struct {
			Deliverer     webhook.Status `json:"deliverer"`
			Subscriptions []struct {
				ID        string `json:"id"`
				Receiver  string `json:"receiver"`
				Delivered int64  `json:"delivered"`
				Cancelled int64  `json:"cancelled"`
				Pending   int64  `json:"pending"`
			} `json:"subscriptions"`
		} `json:"webhooks"`
	}
	getJSON(t, private+"/v1/sync/status", &st)
	if st.Webhooks == nil || len(st.Webhooks.Subscriptions) != 1 {
		t.Fatalf("/v1/sync/status webhooks = %+v", st.Webhooks)
	}
	if s := st.Webhooks.Subscriptions[0]; s.ID != id || s.Delivered != 4 || s.Cancelled != 1 || s.Pending != 0 || strings.Contains(s.Receiver, "s3cret") {
		t.Errorf("/v1/sync/status subscription = %+v, want 4 delivered, 1 cancelled, no token", s)
	}
	if st.Webhooks.Deliverer.Delivered != 4 || !st.Webhooks.Deliverer.Running {
		t.Errorf("deliverer status = %+v", st.Webhooks.Deliverer)
	}
	resp, err := http.Get(private + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mailslot_webhook_deliveries{state="delivered",subscription="` + id + `"} 4`,
		`mailslot_webhook_deliveries{state="cancelled",subscription="` + id + `"} 1`,
		`mailslot_webhook_delivered_total 4`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	out, _, err = privCtl(t, env, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !strings.Contains(out, "WEBHOOK") || !strings.Contains(out, id) {
		t.Errorf("status shows no webhook line:\n%s", out)
	}
	out, _, err = privCtl(t, env, "webhooks", "list")
	if err != nil {
		t.Fatalf("webhooks list: %v", err)
	}
	rows := columns(out)
	if len(rows) != 2 || rows[1][0] != id || rows[1][1] != rc.URL+"/in" || rows[1][4] != "active" || rows[1][8] != "4" {
		t.Errorf("webhooks list:\n%s", out)
	}
}

// data is a delivery body's data member.
func data(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("delivery body %s: %v", body, err)
	}
	return env.Data
}

func TestWebhooksCommands(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := hookEnv(dbURL)
	id, first := addHook(t, env, "--url", "http://127.0.0.1:9/in", "--events", "lead.erased,lead.created", "--property", hookProperty)

	out, _, err := privCtl(t, env, "webhooks", "rotate", id, "--overlap", "2h")
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if !strings.Contains(out, "secret whsec_") || strings.Contains(out, first) || !strings.Contains(out, "both secrets until") {
		t.Errorf("rotate printed:\n%s", out)
	}
	out, _, err = privCtl(t, env, "webhooks", "list", "--json")
	if err != nil {
		t.Fatalf("list --json: %v", err)
	}
	if strings.Contains(out, "whsec_") {
		t.Errorf("list shows a secret: %s", out)
	}
	var views []struct {
		ID                string   `json:"id"`
		Events            []string `json:"events"`
		Property          string   `json:"property"`
		PreviousExpiresAt *string  `json:"previous_secret_expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 || views[0].ID != id ||
		strings.Join(views[0].Events, ",") != "lead.created,lead.erased" || views[0].Property != hookProperty || views[0].PreviousExpiresAt == nil {
		t.Errorf("list --json = %s (%v)", out, err)
	}
	if out, _, err = privCtl(t, env, "webhooks", "redeliver", id); err != nil || !strings.Contains(out, "0 dead deliveries") {
		t.Errorf("redeliver: %v: %s", err, out)
	}
	if out, _, err = privCtl(t, env, "webhooks", "remove", id); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("remove: %v: %s", err, out)
	}
	out, _, _ = privCtl(t, env, "webhooks", "list")
	if rows := columns(out); len(rows) != 2 || rows[1][4] != "disabled (removed)" {
		t.Errorf("list after remove:\n%s", out)
	}

	prod := hookEnv(dbURL)
	prod["MAILSLOT_ENV"] = "production"
	strict := privEnv(dbURL) // MAILSLOT_WEBHOOK_ALLOW_PRIVATE unset
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no url", env, []string{"add", "--events", "lead.created"}, 2, "needs --url and --events"},
		{"unknown event", env, []string{"add", "--url", "http://127.0.0.1:9/", "--events", "lead.deleted"}, 2, `unknown event type "lead.deleted"`},
		{"private refused in production", prod, []string{"add", "--url", "https://hooks.example/", "--events", "lead.created"}, 2, "MAILSLOT_WEBHOOK_ALLOW_PRIVATE must be off in production"},
		{"loopback refused", strict, []string{"add", "--url", "https://127.0.0.1/in", "--events", "lead.created"}, 2, "not allowed"},
		{"metadata refused", strict, []string{"add", "--url", "https://169.254.169.254/latest", "--events", "lead.created"}, 2, "not allowed"},
		{"http refused", strict, []string{"add", "--url", "http://hooks.example/in", "--events", "lead.created"}, 2, "https"},
		{"bad id", env, []string{"remove", "nope"}, 2, `"nope" is not a subscription ID`},
		{"no id", env, []string{"rotate"}, 2, "needs a subscription ID"},
		{"unknown id", env, []string{"redeliver", "00000000-0000-0000-0000-000000000001"}, 1, "no webhook subscription has id"},
		{"rotate removed", env, []string{"rotate", id}, 1, "is disabled (removed)"},
		{"bad overlap", env, []string{"rotate", id, "--overlap", "1s"}, 2, "--overlap must be between"},
		{"unknown command", env, []string{"purge"}, 2, `unknown webhooks command "purge"`},
		{"no database", map[string]string{}, []string{"list"}, 2, "no database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := privCtl(t, tt.env, append([]string{"webhooks"}, tt.args...)...)
			if got := exitCode(err); got != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("webhooks %v: exit %d, %v; want exit %d saying %q", tt.args, got, err, tt.code, tt.want)
			}
		})
	}
}
