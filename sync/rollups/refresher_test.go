package rollups_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/sync/rollups"
)

// TestRefresherFoldsChangedDaysAndSkipsWhenBusy: a sign-up marks its day;
// a round folds it into the rollup and forgets the mark. While another
// session holds the refresh lock (another edge refreshing), a round
// returns at once and leaves the marks for that refresh.
func TestRefresherFoldsChangedDaysAndSkipsWhenBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	marks := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM mailslot.rollup_dirty`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	signUp := func(email string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, first_page, last_seen_at)
			VALUES ('shop.example', $1::text, sha256(convert_to($1::text, 'UTF8')), 'pending', now(), '/join', now())`, email); err != nil {
			t.Fatal(err)
		}
	}
	signUp("ann@example.com")
	if marks() == 0 {
		t.Fatal("a new lead left no mark")
	}
	r, err := rollups.New(rollups.Options{DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.Round(ctx); err != nil {
		t.Fatalf("Round: %v", err)
	}
	if n := marks(); n != 0 {
		t.Errorf("after a refresh %d marks are left", n)
	}
	var signups int
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(signups), 0) FROM mailslot.rollup_lead_pages WHERE property = 'shop.example' AND page = '/join'`).Scan(&signups); err != nil {
		t.Fatal(err)
	}
	if signups != 1 {
		t.Errorf("rollup holds %d sign-ups for /join, want 1", signups)
	}
	st := r.Status()
	if st.LastRefreshAt == nil || st.LeadDays != 1 || st.LastError != "" {
		t.Errorf("status after a refresh = %+v, want one lead day", st)
	}
	first := *st.LastRefreshAt

	// Another edge's refresh holds the lock.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7010002)`); err != nil {
		t.Fatal(err)
	}
	signUp("bob@example.com")
	done := make(chan error, 1)
	go func() { done <- r.Round(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Round while busy: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Round waited for the other refresh instead of skipping")
	}
	if marks() == 0 {
		t.Error("a skipped round forgot the marks")
	}
	if st := r.Status(); !st.LastRefreshAt.Equal(first) {
		t.Errorf("a skipped round moved the last refresh to %v", st.LastRefreshAt)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Round(ctx); err != nil || marks() != 0 {
		t.Fatalf("after the lock was released: Round = %v, %d marks left", err, marks())
	}
}

// TestRefresherRunsOnItsInterval: a running refresher folds a sign-up
// without being asked.
func TestRefresherRunsOnItsInterval(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dbURL := pgtest.NewURL(t)
	pool := pgtest.Pool(t, dbURL)
	r, err := rollups.New(rollups.Options{DatabaseURL: dbURL, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.Signals.Init(t)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	r.Signals.RoundFinished.WaitOrTimeout()
	if _, err := pool.Exec(ctx, `INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
		VALUES ('shop.example', 'cy@example.com', sha256('cy'::bytea), 'pending', now(), now())`); err != nil {
		t.Fatal(err)
	}
	// The round in progress may have begun before the insert; the next
	// one cannot have.
	r.Signals.RoundFinished.Clear()
	r.Signals.RoundFinished.WaitOrTimeout()
	r.Signals.RoundFinished.WaitOrTimeout()
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mailslot.rollup_dirty`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d marks left after two rounds", left)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
