package drain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

// feedback stores the consent change the Resend webhook handler
// (edge/api/mailhooks.go) writes for a hard bounce or a complaint.
func (e *privEdge) feedback(email, property, source string) {
	e.t.Helper()
	now := e.clock.Now().UTC()
	payload, err := json.Marshal(mailslot.ConsentChange{Action: mailslot.ActionUnsubscribe, Property: property,
		Status: mailslot.ConsentWithdrawn, Source: source, RecordedAt: now})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.Outbox.Submit(context.Background(), outbox.Submission{Records: []outbox.Record{{
		ID: uuid.Must(uuid.NewV7()).String(), Kind: mailslot.KindConsent, ReceivedAt: now,
		Payload: payload, EmailHMAC: privHasher.Email(email),
	}}}); err != nil {
		e.t.Fatalf("store the %s change: %v", source, err)
	}
}

// TestFeedbackUnsubscribeReasons: a withdrawal that mail feedback made
// reaches the webhook receivers as lead.unsubscribed with reason bounced
// or complained, told apart by the change's source; the person's own
// unsubscribe stays withdrawn. Each withdraws and suppresses the lead.
func TestFeedbackUnsubscribeReasons(t *testing.T) {
	tests := []struct {
		source string // "" for the person's own unsubscribe link
		reason string
	}{
		{mailslot.SourceHardBounce, webhook.ReasonBounced},
		{mailslot.SourceComplaint, webhook.ReasonComplained},
		{"", webhook.ReasonWithdrawn},
	}
	for i, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			db := newPG(t)
			db.subscribe(webhook.LeadUnsubscribed)
			e := newPrivEdge(t, "edge-a")
			email := fmt.Sprintf("feedback-%d@example.com", i)
			e.at(minute(0)).simpleSignUp(email, shop, "express")
			e.sync(db.url)
			if tt.source == "" {
				e.at(minute(1)).unsubscribe(email, shop)
			} else {
				e.at(minute(1)).feedback(email, shop, tt.source)
			}
			e.sync(db.url)

			evs := db.hookEvents()
			if len(evs) != 1 || evs[0].Type != string(webhook.LeadUnsubscribed) {
				t.Fatalf("events = %+v, want one lead.unsubscribed", evs)
			}
			d := evs[0].Data
			if d["reason"] != tt.reason || d["email"] != email ||
				d["unsubscribed_at"] != minute(1).Format("2006-01-02T15:04:05.000000Z") {
				t.Errorf("lead.unsubscribed data = %v, want reason %s", d, tt.reason)
			}
			db.wantStatus(email, shop, mailslot.ConsentWithdrawn)
			if n := db.int(`SELECT count(*) FROM mailslot.suppressions WHERE email_hmac = $1 AND property = $2`,
				privHasher.Email(email), shop); n != 1 {
				t.Errorf("%d suppressions for the address, want 1", n)
			}
		})
	}
}
