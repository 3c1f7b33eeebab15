package drain

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/outbox"
)

// Batches from two edges, or two of one edge's batches in flight together,
// run in concurrent transactions. These tests hold the first transaction
// open after its statements ran, start the second, and check that the
// second waited rather than missing what the first wrote.

// privacyRow makes a consent-change or erasure row for email, from node-b.
func privacyRow(email string, kind mailslot.Kind, minute int, payload any) outbox.Row {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return outbox.Row{ID: uuid.NewString(), NodeID: "node-b", Kind: kind, ReceivedAt: at(minute),
		Payload: b, EmailHMAC: hasher.Email(email), IPHMAC: hasher.IP("198.51.100.9")}
}

// inFlightTogether applies first on a transaction held at its commit,
// then second (as node-b) while first is open, waits a moment, and lets
// first commit. It reports whether second finished while first was still
// open.
func (f *fixture) inFlightTogether(first, second []outbox.Row) (secondWentFirst bool) {
	f.t.Helper()
	ctx := context.Background()
	held := pgtest.NewHeldCommit(f.pool)
	firstDone := make(chan error, 1)
	go func() {
		d, _ := decode(first)
		_, err := f.app.Apply(ctx, held, d)
		firstDone <- err
	}()
	<-held.Reached
	secondDone := make(chan error, 1)
	go func() {
		d, _ := decode(second)
		_, err := (&Applier{NodeID: "node-b", Region: "test"}).Apply(ctx, f.pool, d)
		secondDone <- err
	}()
	select {
	case err := <-secondDone:
		secondWentFirst = true
		secondDone <- err
	case <-time.After(300 * time.Millisecond):
	}
	close(held.Release)
	for _, c := range []chan error{firstDone, secondDone} {
		if err := <-c; err != nil {
			f.t.Fatalf("Apply: %v", err)
		}
	}
	return secondWentFirst
}

func TestConsentChangeWaitsForASignUpInFlight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		signUp     string // the sign-up's consent
		change     mailslot.ConsentChange
		wantStatus string
	}{
		{"unsubscribe", mailslot.ConsentExpress, mailslot.ConsentChange{Action: mailslot.ActionUnsubscribe,
			Status: mailslot.ConsentWithdrawn, Source: "unsubscribe_link"}, "withdrawn"},
		{"confirmation", mailslot.ConsentPending, mailslot.ConsentChange{Action: mailslot.ActionConfirm,
			Status: mailslot.ConsentExpress, Source: "confirm_link"}, "express"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			signUp := f.number(lead("ann@example.com", sub{at: 0, consent: tt.signUp}))
			ch := tt.change
			ch.Property, ch.RecordedAt = testProperty, at(1)
			change := privacyRow("ann@example.com", mailslot.KindConsent, 1, ch)
			change.Seq = 1
			if f.inFlightTogether(signUp, []outbox.Row{change}) {
				t.Errorf("the %s committed while a sign-up of the same address was in flight", tt.name)
			}
			if got := f.text(`SELECT consent_status FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email("ann@example.com")); got != tt.wantStatus {
				t.Errorf("consent_status = %q after a %s that synced beside the sign-up, want %s", got, tt.name, tt.wantStatus)
			}
		})
	}
}

func TestEventNamingAnErasedSignUpWaitsForTheErasure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	signUp := f.number(lead("ann@example.com", sub{at: 0, consent: mailslot.ConsentExpress}))
	f.apply(signUp...)
	erasure := f.number(privacyRow("ann@example.com", mailslot.KindErasure, 5,
		mailslot.ErasureRequest{RequestedAt: at(5), RequestedBy: "operator"}))
	ev := event(1, signUp[0].ID)
	ev.NodeID, ev.Seq = "node-b", 1
	if f.inFlightTogether(erasure, []outbox.Row{ev}) {
		t.Error("an event naming the erased sign-up committed while the erasure was in flight")
	}
	if n := f.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL OR lead_submission IS NOT NULL OR ip_hmac IS NOT NULL`); n != 0 {
		t.Errorf("%d events still tie the erased person to the event", n)
	}
}
