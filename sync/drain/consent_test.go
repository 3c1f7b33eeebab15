package drain_test

import (
	"testing"
)

// A confirm link minted before a withdrawal must not outlive it: used
// after an unsubscribe (or replayed), it is recorded and changes nothing,
// in whatever order the edges that took the two deliver them.
func TestConfirmLinkMintedBeforeTheWithdrawalDoesNotOverturnIt(t *testing.T) {
	for _, order := range []string{"unsubscribe syncs first", "confirmation syncs first", "confirmation syncs before the lead"} {
		t.Run(order, func(t *testing.T) {
			db := newPG(t)
			a, b, c := newPrivEdge(t, "edge-a"), newPrivEdge(t, "edge-b"), newPrivEdge(t, "edge-c")
			a.at(minute(0)).simpleSignUp(alice, shop, "pending")
			old := a.at(minute(1)).links(alice, shop).Confirm // mailed, not yet clicked
			b.at(minute(2)).follow(b.links(alice, shop).Unsubscribe, "192.0.2.10")
			c.at(minute(3)).follow(old, "192.0.2.10")
			switch order {
			case "unsubscribe syncs first":
				a.sync(db.url)
				b.sync(db.url)
				c.sync(db.url)
			case "confirmation syncs first":
				a.sync(db.url)
				c.sync(db.url)
				db.wantStatus(alice, shop, "express") // nothing withdrawn yet
				b.sync(db.url)
			case "confirmation syncs before the lead":
				c.sync(db.url)
				b.sync(db.url)
				a.sync(db.url)
			}
			db.wantStatus(alice, shop, "withdrawn")
			h := privHasher.Email(alice)
			if n := db.int(`SELECT count(*) FROM mailslot.consent_records
				WHERE email_hmac = $1 AND status = 'express' AND source = 'confirm_link' AND recorded_at = $2 AND token_issued_at = $3`,
				h, minute(3), minute(1)); n != 1 {
				t.Errorf("the late confirmation is not recorded with its link's issue time (%d)", n)
			}
			// Replaying the old link later changes nothing either.
			c.at(minute(20)).follow(old, "192.0.2.10")
			c.sync(db.url)
			db.wantStatus(alice, shop, "withdrawn")
			// A link minted after the unsubscribe confirms.
			c.at(minute(21)).confirm(alice, shop)
			c.sync(db.url)
			db.wantStatus(alice, shop, "express")
		})
	}
}

// The same holds for an erasure: a link minted before it cannot turn a
// later sign-up of the address on.
func TestConfirmLinkMintedBeforeAnErasureDoesNotOverturnIt(t *testing.T) {
	db := newPG(t)
	e := newPrivEdge(t, "edge-a")
	e.at(minute(0)).simpleSignUp(alice, shop, "pending")
	old := e.at(minute(1)).links(alice, shop).Confirm
	e.at(minute(2)).eraseAdmin(alice)
	e.at(minute(3)).simpleSignUp(alice, shop, "express")
	e.at(minute(4)).follow(old, "192.0.2.10")
	e.sync(db.url)
	db.wantStatus(alice, shop, "withdrawn")
	if n := db.int(`SELECT count(*) FROM mailslot.leads WHERE email_hmac = $1 AND confirmed_at IS NOT NULL`, privHasher.Email(alice)); n != 0 {
		t.Errorf("the stale confirmation set confirmed_at")
	}
}
