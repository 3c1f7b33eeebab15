package drain

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// challenged is lead with a challenge verdict.
func challenged(email string, s sub, verdict string) outbox.Row {
	r := lead(email, s)
	var p mailslot.LeadPayload
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		panic(err)
	}
	p.Challenge = verdict
	r.Payload, _ = json.Marshal(p)
	return r
}

func verdictRowFor(signup outbox.Row, verdict string, minute int) outbox.Row {
	b, _ := json.Marshal(mailslot.ChallengeVerdict{Submission: signup.ID, Property: testProperty, Verdict: verdict, CheckedAt: at(minute)})
	return outbox.Row{ID: uuid.NewString(), NodeID: testNode, Kind: mailslot.KindChallenge, ReceivedAt: at(minute),
		Payload: b, EmailHMAC: signup.EmailHMAC}
}

// TestChallengeVerdictsReachPostgres: each sign-up's verdict lands on its
// consent record and the lead keeps the summary; a re-check turns an
// unverified sign-up passed (in the same batch as the sign-up or a later
// one) or failed, and changes nothing when replayed.
func TestChallengeVerdictsReachPostgres(t *testing.T) {
	f := newFixture(t)
	plain := lead("plain@example.com", sub{at: 1, consent: mailslot.ConsentPending})
	ok := challenged("ok@example.com", sub{at: 1, consent: mailslot.ConsentPending}, mailslot.ChallengePassed)
	held := challenged("held@example.com", sub{at: 1, consent: mailslot.ConsentPending}, mailslot.ChallengeUnverified)
	same := challenged("same@example.com", sub{at: 1, consent: mailslot.ConsentPending}, mailslot.ChallengeUnverified)
	bad := challenged("bad@example.com", sub{at: 1, consent: mailslot.ConsentPending}, mailslot.ChallengeUnverified)
	f.apply(f.number(plain, ok, held, same, verdictRowFor(same, mailslot.ChallengePassed, 2), bad)...)

	record := func(r outbox.Row) string {
		return f.text(`SELECT challenge_verdict FROM mailslot.consent_records WHERE submission_id = $1`, r.ID)
	}
	leadVerdict := func(email string) string {
		return f.text(`SELECT challenge_verdict FROM mailslot.leads WHERE email = $1`, email)
	}
	for _, c := range []struct {
		row          outbox.Row
		email        string
		record, lead string
	}{
		{plain, "plain@example.com", "<null>", "<null>"},
		{ok, "ok@example.com", "passed", "passed"},
		{held, "held@example.com", "unverified", "unverified"},
		{same, "same@example.com", "passed", "passed"},
		{bad, "bad@example.com", "unverified", "unverified"},
	} {
		if got := record(c.row); got != c.record {
			t.Errorf("%s consent record verdict %s, want %s", c.email, got, c.record)
		}
		if got := leadVerdict(c.email); got != c.lead {
			t.Errorf("%s lead verdict %s, want %s", c.email, got, c.lead)
		}
	}

	// Later batches: held passes, bad fails; a replayed verdict row and a
	// failed re-check of a passed sign-up change nothing.
	later := f.number(verdictRowFor(held, mailslot.ChallengePassed, 3), verdictRowFor(bad, mailslot.ChallengeFailed, 3),
		verdictRowFor(ok, mailslot.ChallengeFailed, 3))
	f.apply(later...)
	f.apply(later...)
	if record(held) != "passed" || leadVerdict("held@example.com") != "passed" {
		t.Errorf("held after re-check: record %s lead %s", record(held), leadVerdict("held@example.com"))
	}
	if record(bad) != "failed" || leadVerdict("bad@example.com") != "unverified" {
		t.Errorf("bad after re-check: record %s lead %s", record(bad), leadVerdict("bad@example.com"))
	}
	if record(ok) != "passed" {
		t.Errorf("a failed re-check changed a passed sign-up: %s", record(ok))
	}
	// A second, unverified sign-up of a passed lead keeps the lead passed
	// but is itself unverified: mail for that sign-up waits.
	again := challenged("ok@example.com", sub{at: 5, consent: mailslot.ConsentPending}, mailslot.ChallengeUnverified)
	f.apply(f.number(again)...)
	if record(again) != "unverified" || leadVerdict("ok@example.com") != "passed" {
		t.Errorf("second sign-up: record %s lead %s", record(again), leadVerdict("ok@example.com"))
	}
	// The condition mail job creation uses.
	if n := f.int(`SELECT count(*) FROM mailslot.consent_records c
		WHERE c.challenge_verdict IS NULL OR c.challenge_verdict = 'passed'`); n != 4 {
		t.Errorf("%d sign-ups may get mail, want 4 (plain, ok, same, held)", n)
	}

	// Mail follows the verdicts: a confirmation request for every sign-up
	// without a challenge or that passed one (at once or on a re-check),
	// none for the one whose re-check failed.
	if got := f.text(`SELECT string_agg(l.email, ',' ORDER BY l.email) FROM mailslot.mail_jobs j
		JOIN mailslot.leads l ON l.id = j.lead_id WHERE j.kind = 'confirmation'`); got != "held@example.com,ok@example.com,plain@example.com,same@example.com" {
		t.Errorf("confirmation requests for %s, want held, ok, plain and same (not bad)", got)
	}

	// Every statement of challenge.go ran.
	f.log.mu.Lock()
	defer f.log.mu.Unlock()
	for name, sql := range sqlConstants(t, "challenge.go") {
		if f.log.ok[sql] == 0 {
			t.Errorf("%s never ran successfully (last error: %v)", name, f.log.failed[sql])
		}
	}
}

func TestIncompleteVerdictIsPoison(t *testing.T) {
	r := verdictRowFor(lead("x@example.com", sub{at: 1, consent: mailslot.ConsentPending}), "maybe", 1)
	r.Seq = 1
	if _, poison := decode([]outbox.Row{r}); len(poison) != 1 {
		t.Fatalf("poison %v, want the row refused", poison)
	}
}
