package drain_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot/internal/addrscrub/addrscrubtest"
	"github.com/mailslot/mailslot/sync/drain"
)

// Events carry no address column, yet a payload can quote the address in
// props, wrapped or encoded past the intake's filter. Erasure finds it
// there, the same way whichever path erases (mailslotctl's drain.Erase, or
// an erasure request that syncs), and leaves longer addresses alone.
func TestErasureScrubsTheAddressFromEventPayloads(t *testing.T) {
	addr := addrscrubtest.Address
	for _, how := range []string{"drain.Erase", "synced erasure request"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			db := newPG(t)
			e := newPrivEdge(t, "edge-a")
			e.at(minute(0)).simpleSignUp(addr, shop, "express")
			e.sync(db.url)
			want := map[string]string{}
			changed := int64(0)
			for i, c := range addrscrubtest.Cases {
				id := uuid.NewString()
				payload, _ := json.Marshal(map[string]any{"type": "click", "props": map[string]any{"v": c.In, "n": i}})
				if _, err := db.pool.Exec(ctx, `INSERT INTO mailslot.events (submission_id, property, type, received_at, payload, origin_node, origin_seq)
					VALUES ($1, $2, 'click', $3, $4, 'elsewhere', $5)`, id, shop, minute(1), payload, i); err != nil {
					t.Fatal(err)
				}
				want[id] = c.Want
				if c.In != c.Want {
					changed++
				}
			}
			if how == "drain.Erase" {
				res, err := drain.Erase(ctx, db.pool, privHasher.Email(addr), minute(30), "operator")
				if err != nil {
					t.Fatal(err)
				}
				if res.EventPayloadsScrubbed != changed {
					t.Errorf("EventPayloadsScrubbed = %d, want %d", res.EventPayloadsScrubbed, changed)
				}
			} else {
				e.at(minute(30)).eraseAdmin(addr)
				e.sync(db.url)
			}
			for id, w := range want {
				if got := db.text(`SELECT payload -> 'props' ->> 'v' FROM mailslot.events WHERE submission_id = $1`, id); got != w {
					t.Errorf("props.v = %q, want %q", got, w)
				}
			}
		})
	}
}

// A lead with sign-ups from after the erasure time is reset, not deleted,
// so the cascade that takes a deleted lead's image jobs does not run: the
// erasure deletes them itself, with what the provider said about the image.
func TestErasureOfAResetLeadDeletesItsImageJobs(t *testing.T) {
	ctx := context.Background()
	db := newPG(t)
	e := newPrivEdge(t, "edge-a", map[string]string{"MAILSLOT_IMAGE_ALLOWED_HOSTS": "img.example"})
	e.at(minute(0)).signUp("198.51.100.7", map[string]any{"email": alice, "property": shop, "consent": "express",
		"image_url": "https://img.example/alice.jpg"})
	e.at(minute(20)).simpleSignUp(alice, shop, "pending")
	e.simpleSignUp(bob, shop, "express")
	e.signUp("203.0.113.9", map[string]any{"email": bob, "property": shop, "consent": "express", "image_url": "https://img.example/bob.jpg"})
	e.sync(db.url)
	if _, err := db.pool.Exec(ctx, `UPDATE mailslot.image_jobs SET state = 'succeeded', caption = 'A person at the beach', face_count = 1`); err != nil {
		t.Fatal(err)
	}
	res, err := drain.Erase(ctx, db.pool, privHasher.Email(alice), minute(10), "operator")
	if err != nil {
		t.Fatal(err)
	}
	if res.LeadsReset != 1 || res.ImageJobsDeleted != 1 {
		t.Errorf("Erase = %+v, want the lead reset and its 1 image job deleted", res)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.image_jobs WHERE image_url LIKE '%alice%' OR lead_id IN (SELECT id FROM mailslot.leads WHERE email_hmac = $1)`,
		privHasher.Email(alice)); n != 0 {
		t.Errorf("%d image jobs of the erased address survive", n)
	}
	if n := db.int(`SELECT count(*) FROM mailslot.image_jobs WHERE image_url = 'https://img.example/bob.jpg' AND caption IS NOT NULL`); n != 1 {
		t.Errorf("another lead's image job went too")
	}
}
