package challenges_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailslot/mailslot/internal/challenge"
	"github.com/mailslot/mailslot/internal/challenge/policy"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/challenges"
)

func newPolicy(t *testing.T, dir string) *policy.Policy {
	t.Helper()
	p, err := policy.New(policy.Options{File: filepath.Join(dir, policy.FileName)})
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	return p
}

func newPuller(t *testing.T, p *policy.Policy, dbURL string) *challenges.Puller {
	t.Helper()
	pl, err := challenges.New(challenges.Options{Policy: p, DatabaseURL: dbURL})
	if err != nil {
		t.Fatalf("challenges.New: %v", err)
	}
	return pl
}

// TestSettingsSurviveRestartWithPostgresDown pulls the settings from
// Postgres, then starts a new policy (a restarted edge) whose Postgres is
// unreachable: it enforces what the first pull saw, from the file.
func TestSettingsSurviveRestartWithPostgresDown(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	if _, err := pool.Exec(ctx, `
		INSERT INTO mailslot.property_challenges (property, kind, site_key, secret, hostnames, action, no_js) VALUES
		('shop', 'turnstile', '0x4AAA', 'ts-secret', '{shop.example}', 'signup', 'refuse'),
		('blog', 'pow', '', '', '{}', '', 'hold'),
		('plain', 'none', '', '', '{}', '', 'hold')`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := newPolicy(t, dir)
	if r := p.For("shop"); r != nil {
		t.Fatalf("before a pull, shop has rule %+v", r)
	}
	pl := newPuller(t, p, dbURL)
	if err := pl.Pull(ctx); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	check := func(p *policy.Policy, from string) {
		t.Helper()
		r := p.For("shop")
		if r == nil || r.Kind != challenge.KindTurnstile || r.NoJS != policy.Refuse || r.SiteKey != "0x4AAA" || r.Verifier == nil {
			t.Fatalf("shop rule = %+v", r)
		}
		// pow without a key cannot be enforced, but the rule stands.
		if r := p.For("blog"); r == nil || r.Kind != challenge.KindPoW || r.Verifier != nil {
			t.Fatalf("blog rule = %+v", r)
		}
		if r := p.For("plain"); r != nil {
			t.Fatalf("plain rule = %+v, want none", r)
		}
		if r := p.For("unknown"); r != nil {
			t.Fatalf("unknown property rule = %+v, want the fleet default (none)", r)
		}
		if st := p.Status(); st.SettingsFrom != from || st.Properties != 3 || st.PulledAt == nil {
			t.Fatalf("status = %+v, want from %s with 3 properties", st, from)
		}
	}
	check(p, "postgres")
	fi, err := os.Stat(filepath.Join(dir, policy.FileName))
	if err != nil {
		t.Fatalf("settings file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("settings file mode %v, want 0600 (it holds secrets)", fi.Mode().Perm())
	}

	// The restarted edge: Postgres is gone.
	closed := "postgres://postgres@" + edgetest.FreeAddr(t) + "/mailslot?sslmode=disable&connect_timeout=2"
	again := newPolicy(t, dir)
	down := newPuller(t, again, closed)
	if err := down.Pull(ctx); err == nil {
		t.Fatal("Pull with Postgres down succeeded")
	}
	check(again, "file")

	// A change in Postgres reaches the edge at the next pull, and a
	// cleared row falls back to the fleet default.
	if _, err := pool.Exec(ctx, `DELETE FROM mailslot.property_challenges WHERE property = 'shop'`); err != nil {
		t.Fatal(err)
	}
	if err := newPuller(t, again, dbURL).Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if r := again.For("shop"); r != nil {
		t.Fatalf("after clear, shop rule = %+v", r)
	}
	if st := newPolicy(t, dir).Status(); st.Properties != 2 {
		t.Fatalf("the file was not rewritten after the change: %+v", st)
	}
}

// TestUnreadableFileKeepsAccepting: a corrupt settings file leaves the
// fleet default in force rather than stopping the edge.
func TestUnreadableFileKeepsAccepting(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, policy.FileName), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newPolicy(t, dir)
	if st := p.Status(); st.SettingsFrom != "environment" {
		t.Fatalf("status = %+v", st)
	}
}

// TestRunPutsSettingsInForce: the loop's first pull puts the table's
// settings in force and records the pull.
func TestRunPutsSettingsInForce(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	if _, err := pgtest.Pool(t, dbURL).Exec(ctx, `
		INSERT INTO mailslot.property_challenges (property, kind, site_key, secret, hostnames, action, no_js) VALUES
		('blog', 'pow', '', '', '{}', '', 'hold')`); err != nil {
		t.Fatal(err)
	}
	p := newPolicy(t, t.TempDir())
	pl := newPuller(t, p, dbURL)
	pl.Signals.Init(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pl.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	pl.Signals.RoundFinished.WaitOrTimeout()
	if r := p.For("blog"); r == nil || r.Kind != challenge.KindPoW {
		t.Errorf("after the first pull, blog has rule %+v; want the proof of work", r)
	}
	if st := pl.Status(); st.LastPullAt == nil || st.LastError != "" {
		t.Errorf("status after the first pull = %+v", st)
	}
}

func TestNewRefusesNoPolicy(t *testing.T) {
	if _, err := challenges.New(challenges.Options{DatabaseURL: "postgres://127.0.0.1:1/x"}); err == nil {
		t.Fatal("New without a policy succeeded; its first pull would panic")
	}
}
