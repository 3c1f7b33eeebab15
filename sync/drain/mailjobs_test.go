package drain

import (
	"context"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// Mail jobs are decided by the sync, in the batch's transaction: these
// tests apply real batches to Postgres 18 and read mailslot.mail_jobs.

func confirmRow(email string, minute int) outbox.Row {
	return privacyRow(email, mailslot.KindConsent, minute, mailslot.ConsentChange{Action: mailslot.ActionConfirm,
		Property: testProperty, Status: mailslot.ConsentExpress, Source: "confirm_link", RecordedAt: at(minute)})
}

func unsubscribeRow(email string, minute int) outbox.Row {
	return privacyRow(email, mailslot.KindConsent, minute, mailslot.ConsentChange{Action: mailslot.ActionUnsubscribe,
		Property: testProperty, Status: mailslot.ConsentWithdrawn, Source: "unsubscribe_link", RecordedAt: at(minute)})
}

// jobs lists an address's mail jobs as "kind state[ after_withdrawal]", oldest first.
func (f *fixture) jobs(email string) []string {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `
		SELECT j.kind || ' ' || j.state || CASE WHEN j.after_withdrawal THEN ' after_withdrawal' ELSE '' END
		FROM mailslot.mail_jobs j JOIN mailslot.leads l ON l.id = j.lead_id
		WHERE l.property = $1 AND l.email_hmac = $2 ORDER BY j.id`, testProperty, hasher.Email(email))
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// age moves every job of the fixture back by the interval, as if that
// much time had passed since they were queued.
func (f *fixture) age(interval string) {
	f.t.Helper()
	f.exec(`UPDATE mailslot.mail_jobs SET created_at = created_at - $1::interval`, interval)
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMailJobStatementsRunAgainstTheMigratedSchema(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO mailslot.properties (property, welcome) VALUES ($1, true)`, testProperty)
	f.apply(f.number(lead("ann@example.com", sub{at: 1, consent: mailslot.ConsentPending}))...)
	f.apply(f.number(confirmRow("ann@example.com", 2), unsubscribeRow("ann@example.com", 3))...)
	held := challenged("bo@example.com", sub{at: 4, consent: mailslot.ConsentPending}, mailslot.ChallengeUnverified)
	f.apply(f.number(held, verdictRowFor(held, mailslot.ChallengePassed, 5))...)
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	for name, sql := range sqlConstants(t, "mailjobs.go") {
		if f.log.ok[sql] == 0 {
			t.Errorf("%s never ran successfully (last error: %v)", name, f.log.failed[sql])
		}
	}
}

func TestWhoIsQueuedAConfirmation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		doubleOptIn *bool // nil: no properties row
		consent     string
		want        []string
	}{
		{"pending, default double opt-in", nil, mailslot.ConsentPending, []string{"confirmation queued"}},
		{"express claim is confirmed too", nil, mailslot.ConsentExpress, []string{"confirmation queued"}},
		{"implied consent asks for nothing", nil, mailslot.ConsentImplied, nil},
		{"pending without double opt-in", new(false), mailslot.ConsentPending, nil},
		{"express without double opt-in", new(false), mailslot.ConsentExpress, []string{"confirmation queued"}},
		{"pending with double opt-in", new(true), mailslot.ConsentPending, []string{"confirmation queued"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.doubleOptIn != nil {
				f.exec(`INSERT INTO mailslot.properties (property, double_opt_in) VALUES ($1, $2)`, testProperty, *tc.doubleOptIn)
			}
			f.apply(f.number(lead("ann@example.com", sub{at: 1, consent: tc.consent}))...)
			if got := f.jobs("ann@example.com"); !eq(got, tc.want) {
				t.Errorf("jobs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfirmationThrottleAndCap(t *testing.T) {
	f := newFixture(t)
	ann := "ann@example.com"
	// Three sign-ups in one batch and two more batches the same day: one request.
	f.apply(f.number(
		lead(ann, sub{at: 1, consent: mailslot.ConsentPending}),
		lead(ann, sub{at: 2, consent: mailslot.ConsentExpress}),
		lead(ann, sub{at: 3, consent: mailslot.ConsentPending}),
	)...)
	f.apply(f.number(lead(ann, sub{at: 4, consent: mailslot.ConsentPending}))...)
	f.apply(f.number(lead(ann, sub{at: 5, consent: mailslot.ConsentPending}))...)
	if got := f.int(`SELECT count(*) FROM mailslot.mail_jobs`); got != 1 {
		t.Fatalf("after three batches in a day: %d jobs, want 1", got)
	}
	// A day later, one more; never more than the cap.
	for i := range MailConfirmationCap + 3 {
		f.age("25 hours")
		f.apply(f.number(lead(ann, sub{at: 10 + i, consent: mailslot.ConsentPending}))...)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.mail_jobs`); got != MailConfirmationCap {
		t.Errorf("after many days of sign-ups: %d jobs, want the cap %d", got, MailConfirmationCap)
	}
}

func TestWithdrawnAddressGetsOneRequestPerMonth(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO mailslot.properties (property, welcome) VALUES ($1, true)`, testProperty)
	ann := "ann@example.com"
	f.apply(f.number(lead(ann, sub{at: 1, consent: mailslot.ConsentPending}))...)
	// The unsubscribe cancels the queued request.
	f.apply(f.number(unsubscribeRow(ann, 2))...)
	if got, want := f.jobs(ann), []string{"confirmation cancelled"}; !eq(got, want) {
		t.Fatalf("after unsubscribe: %q, want %q", got, want)
	}
	// A new sign-up two days later brings one request, marked as such.
	f.age("2 days")
	f.apply(f.number(lead(ann, sub{at: 3, consent: mailslot.ConsentExpress}))...)
	want := []string{"confirmation cancelled", "confirmation queued after_withdrawal"}
	if got := f.jobs(ann); !eq(got, want) {
		t.Fatalf("new sign-up after unsubscribe: %q, want %q", got, want)
	}
	// Another a few days on: nothing, the month is not over.
	f.age("5 days")
	f.apply(f.number(lead(ann, sub{at: 4, consent: mailslot.ConsentExpress}))...)
	if got := f.jobs(ann); !eq(got, want) {
		t.Fatalf("second sign-up within 30 days: %q, want %q", got, want)
	}
	f.age("31 days")
	f.apply(f.number(lead(ann, sub{at: 5, consent: mailslot.ConsentPending}))...)
	want = append(want, "confirmation queued after_withdrawal")
	if got := f.jobs(ann); !eq(got, want) {
		t.Fatalf("sign-up after 30 days: %q, want %q", got, want)
	}
}

func TestErasedAddressComesBackWithOneRequestAndNoWelcome(t *testing.T) {
	f := newFixture(t)
	ann := "ann@example.com"
	f.apply(f.number(lead(ann, sub{at: 1, consent: mailslot.ConsentPending}))...)
	if _, err := Erase(context.Background(), f.pool, hasher.Email(ann), at(2), "operator"); err != nil {
		t.Fatal(err)
	}
	if got := f.int(`SELECT count(*) FROM mailslot.mail_jobs`); got != 0 {
		t.Fatalf("erasure left %d mail jobs", got)
	}
	f.apply(f.number(lead(ann, sub{at: 3, consent: mailslot.ConsentPending}))...)
	f.apply(f.number(lead(ann, sub{at: 4, consent: mailslot.ConsentPending}))...)
	if got, want := f.jobs(ann), []string{"confirmation queued after_withdrawal"}; !eq(got, want) {
		t.Errorf("sign-ups after erasure: %q, want %q", got, want)
	}
}

func TestConfirmQueuesOneWelcomeWhenTheProperyWantsOne(t *testing.T) {
	for _, welcome := range []bool{true, false} {
		f := newFixture(t)
		f.exec(`INSERT INTO mailslot.properties (property, welcome) VALUES ($1, $2)`, testProperty, welcome)
		ann := "ann@example.com"
		f.apply(f.number(lead(ann, sub{at: 1, consent: mailslot.ConsentPending}))...)
		f.apply(f.number(confirmRow(ann, 2))...)
		f.apply(f.number(confirmRow(ann, 3))...)
		want := []string{"confirmation cancelled"}
		if welcome {
			want = append(want, "welcome queued")
		}
		if got := f.jobs(ann); !eq(got, want) {
			t.Errorf("welcome=%v: %q, want %q", welcome, got, want)
		}
		if welcome {
			f.apply(f.number(unsubscribeRow(ann, 4))...)
			if got, want := f.jobs(ann), []string{"confirmation cancelled", "welcome cancelled"}; !eq(got, want) {
				t.Errorf("unsubscribe after confirm: %q, want %q", got, want)
			}
		}
	}
}

func TestConfirmOfAnUnknownAddressQueuesNothing(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO mailslot.properties (property, welcome) VALUES ($1, true)`, testProperty)
	f.apply(f.number(confirmRow("nobody@example.com", 1))...)
	if got := f.int(`SELECT count(*) FROM mailslot.mail_jobs`); got != 0 {
		t.Errorf("%d mail jobs for a confirmation without a lead", got)
	}
}
