package drain

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/sync/images"
)

// Anonymous sign-ups must not spend the image budget: one address signing
// up again and again with one image queues one job, and a property stops
// queueing at its daily quota, which status then reports.
func TestSignUpImagesAreBoundedPerLeadAndPerDay(t *testing.T) {
	f := newFixture(t)
	f.app.ImageDailyQuota = 3
	const img = "https://cdn.example.com/same.jpg"
	for batch := range 3 {
		rows := f.number(
			lead("rep@example.com", sub{at: batch*2 + 1, consent: mailslot.ConsentExpress, image: img}),
			lead("rep@example.com", sub{at: batch*2 + 2, consent: mailslot.ConsentExpress, image: img}),
		)
		f.apply(rows...)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs WHERE image_url = $1`, img); got != 1 {
		t.Fatalf("one address signing up six times with one image queued %d jobs, want 1", got)
	}

	// Five more leads with images in one batch: two fit under the quota of
	// three, the other three are refused and counted.
	batch := f.number(
		lead("a@example.com", sub{at: 10, consent: mailslot.ConsentPending, image: "https://cdn.example.com/a.jpg"}),
		lead("b@example.com", sub{at: 11, consent: mailslot.ConsentPending, image: "https://cdn.example.com/b.jpg"}),
		lead("c@example.com", sub{at: 12, consent: mailslot.ConsentPending, image: "https://cdn.example.com/c.jpg"}),
		lead("d@example.com", sub{at: 13, consent: mailslot.ConsentPending, image: "https://cdn.example.com/d.jpg"}),
		lead("e@example.com", sub{at: 14, consent: mailslot.ConsentPending, image: "https://cdn.example.com/e.jpg"}),
	)
	f.apply(batch...)
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs`); got != 3 {
		t.Errorf("image jobs after the quota = %d, want 3", got)
	}
	// A later batch on the same day queues nothing more.
	f.apply(f.number(lead("z@example.com", sub{at: 20, consent: mailslot.ConsentPending, image: "https://cdn.example.com/z.jpg"}))...)
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs`); got != 3 {
		t.Errorf("image jobs after another batch = %d, want 3", got)
	}
	st, err := images.ReadStatus(context.Background(), f.pool, "replicate", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.QuotaReached) != 1 || fmt.Sprint(st.QuotaReached[0]) != fmt.Sprint(images.QuotaReached{Property: testProperty, Queued: 3, Refused: 4}) {
		t.Errorf("status quota_reached = %+v, want %s with 3 queued and 4 refused", st.QuotaReached, testProperty)
	}

	// Without a quota, every new image is queued.
	f.app.ImageDailyQuota = 0
	f.apply(f.number(lead("y@example.com", sub{at: 30, consent: mailslot.ConsentPending, image: "https://cdn.example.com/y.jpg"}))...)
	if got := f.int(`SELECT count(*) FROM mailslot.image_jobs`); got != 4 {
		t.Errorf("image jobs without a quota = %d, want 4", got)
	}
}
