package drain

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/edge/outbox"
	"github.com/mailslot/mailslot/internal/pgtest"
)

// Batches from two edges, or two of one edge's batches in flight together,
// run in concurrent transactions. These tests hold the first transaction
// open after its statements ran, start the second, and check that the
// second waited rather than missing what the first wrote.

// privacyRow makes a consent-change or erasure row for email, from node-b.
func privacyRow(email string, kind outbox.Kind, minute int, payload any) outbox.Row {
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

func TestUnsubscribeWaitsForASignUpInFlight(t *testing.T) {
	f := newFixture(t)
	signUp := f.number(lead("ann@example.com", sub{at: 0, consent: intake.ConsentExpress}))
	unsub := privacyRow("ann@example.com", outbox.KindConsent, 1, intake.ConsentChange{
		Action: intake.ActionUnsubscribe, Property: testProperty, Status: intake.ConsentWithdrawn,
		Source: "unsubscribe_link", RecordedAt: at(1)})
	unsub.Seq = 1
	if f.inFlightTogether(signUp, []outbox.Row{unsub}) {
		t.Error("the unsubscribe committed while a sign-up of the same address was in flight")
	}
	if got := f.text(`SELECT consent_status FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email("ann@example.com")); got != "withdrawn" {
		t.Errorf("consent_status = %q after an unsubscribe that synced beside the sign-up, want withdrawn", got)
	}
}

func TestConfirmationWaitsForASignUpInFlight(t *testing.T) {
	f := newFixture(t)
	signUp := f.number(lead("ann@example.com", sub{at: 0, consent: intake.ConsentPending}))
	confirm := privacyRow("ann@example.com", outbox.KindConsent, 1, intake.ConsentChange{
		Action: intake.ActionConfirm, Property: testProperty, Status: intake.ConsentExpress,
		Source: "confirm_link", RecordedAt: at(1)})
	confirm.Seq = 1
	if f.inFlightTogether(signUp, []outbox.Row{confirm}) {
		t.Error("the confirmation committed while a sign-up of the same address was in flight")
	}
	if got := f.text(`SELECT consent_status FROM mailslot.leads WHERE email_hmac = $1`, hasher.Email("ann@example.com")); got != "express" {
		t.Errorf("consent_status = %q after a confirmation that synced beside the sign-up, want express", got)
	}
}

func TestEventNamingAnErasedSignUpWaitsForTheErasure(t *testing.T) {
	f := newFixture(t)
	signUp := f.number(lead("ann@example.com", sub{at: 0, consent: intake.ConsentExpress}))
	f.apply(signUp...)
	erasure := f.number(privacyRow("ann@example.com", outbox.KindErasure, 5,
		intake.ErasureRequest{RequestedAt: at(5), RequestedBy: "operator"}))
	ev := event(1, signUp[0].ID)
	ev.NodeID, ev.Seq = "node-b", 1
	if f.inFlightTogether(erasure, []outbox.Row{ev}) {
		t.Error("an event naming the erased sign-up committed while the erasure was in flight")
	}
	if n := f.int(`SELECT count(*) FROM mailslot.events WHERE lead_id IS NOT NULL OR lead_submission IS NOT NULL OR ip_hmac IS NOT NULL`); n != 0 {
		t.Errorf("%d events still tie the erased person to the event", n)
	}
}
