package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// TestWebhookGoneEndToEnd: a receiver that answers 410 to its first
// delivery through a real edge has its subscription disabled ("gone", as
// `webhooks list` shows), and is sent nothing more, while another
// subscription keeps receiving.
func TestWebhookGoneEndToEnd(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := hookEnv(dbURL)
	gone := webhooktest.New(t, func(webhooktest.Request) int { return http.StatusGone })
	healthy := webhooktest.New(t, nil)
	goneID, _ := addHook(t, env, "--url", gone.URL+"/in", "--events", "lead.created,lead.erased")
	healthyID, _ := addHook(t, env, "--url", healthy.URL+"/in", "--events", "lead.created")
	public, _ := hookNode(t, dbURL)

	signUp := func(email string) {
		t.Helper()
		if code, body := privPost(t, public+"/v1/leads", `{"email":"`+email+`","property":"`+hookProperty+`","consent":"express"}`); code != http.StatusAccepted {
			t.Fatalf("sign-up: %d %s", code, body)
		}
	}
	signUp(hookAnn)
	waitRequest(t, gone, "Ann's lead.created refused with 410", func(r webhooktest.Request) bool {
		return r.Type == "lead.created" && r.Status == http.StatusGone
	})
	waitRequest(t, healthy, "Ann's lead.created", accepted("lead.created", hookAnn))

	// The 410 is recorded before the next round claims anything, so Erin's
	// sign-up, once the healthy receiver has it, has been claimed past the
	// disabled subscription.
	signUp(hookErin)
	waitRequest(t, healthy, "Erin's lead.created", accepted("lead.created", hookErin))
	if n := len(gone.Requests()); n != 1 {
		t.Errorf("the gone receiver got %d requests, want 1 (nothing after its 410)", n)
	}

	out, errOut, err := privCtl(t, env, "webhooks", "list", "--json")
	if err != nil {
		t.Fatalf("webhooks list: %v: %s", err, errOut)
	}
	var views []struct {
		ID             string `json:"id"`
		DisabledReason string `json:"disabled_reason"`
		Deliveries     struct {
			Pending int64 `json:"pending"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("webhooks list --json: %v\n%s", err, out)
	}
	reasons := map[string]string{}
	for _, v := range views {
		reasons[v.ID] = v.DisabledReason
		if v.ID == goneID && v.Deliveries.Pending != 0 {
			t.Errorf("the gone subscription has %d pending deliveries, want 0", v.Deliveries.Pending)
		}
	}
	if reasons[goneID] != "gone" || reasons[healthyID] != "" {
		t.Errorf("disabled reasons = %v, want %s gone and %s active", reasons, goneID, healthyID)
	}
}
