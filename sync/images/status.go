package images

import (
	"context"
	"fmt"
	"time"
)

// Spend is what the provider billed this calendar month (UTC), as the sum
// of each prediction's reported compute time times the configured price
// per second.
type Spend struct {
	MonthStart  time.Time `json:"month_start"`
	Seconds     float64   `json:"seconds"`
	USD         float64   `json:"usd"`
	Predictions int64     `json:"predictions"`
}

// MonthToDate sums the spend ledger since the start of the month (UTC).
func (s *Store) MonthToDate(ctx context.Context) (Spend, error) {
	var sp Spend
	err := s.db.QueryRow(ctx, `
		SELECT date_trunc('month', now(), 'UTC'), coalesce(sum(predict_seconds), 0),
		       coalesce(sum(cost_usd), 0)::float8, count(*)
		FROM mailslot.image_spend WHERE recorded_at >= date_trunc('month', now(), 'UTC')`).
		Scan(&sp.MonthStart, &sp.Seconds, &sp.USD, &sp.Predictions)
	if err != nil {
		return Spend{}, fmt.Errorf("read month-to-date image spend: %w", err)
	}
	sp.MonthStart = sp.MonthStart.UTC()
	return sp, nil
}

// Status is the image pipeline's state, for /v1/sync/status, mailslotctl
// status and metrics. The counts and the spend come from Postgres, so they
// are the same whichever edge answers; State, Reason and LastError are the
// answering edge's dispatcher's own.
type Status struct {
	// Provider is the configured provider, or "off".
	Provider string `json:"provider"`
	// State is the dispatcher's: starting, idle, dispatching,
	// budget_exhausted, backoff, schema_behind, stopped; "disabled" when
	// this edge runs no dispatcher.
	State string `json:"state"`
	// Reason says why jobs are not moving, when they are not.
	Reason string `json:"reason,omitempty"`
	// QueueDepth counts the jobs waiting to run (queued, and failed ones
	// waiting to retry); Ready those of them that are due now.
	QueueDepth int64 `json:"queue_depth"`
	Ready      int64 `json:"ready"`
	InFlight   int64 `json:"in_flight"`
	Failed     int64 `json:"failed"`
	Dead       int64 `json:"dead"`
	Succeeded  int64 `json:"succeeded"`
	Cancelled  int64 `json:"cancelled"`
	// OldestReadyAgeSeconds is how long the longest-waiting due job has
	// been due.
	OldestReadyAgeSeconds float64 `json:"oldest_ready_age_seconds"`
	UploadBytes           int64   `json:"upload_bytes"`
	MonthToDateUSD        float64 `json:"month_to_date_usd"`
	MonthToDateSeconds    float64 `json:"month_to_date_seconds"`
	MonthlyBudgetUSD      float64 `json:"monthly_budget_usd"`
	BudgetExhausted       bool    `json:"budget_exhausted"`
	// QuotaReached lists the properties whose sign-ups reached today's
	// MAILSLOT_IMAGE_DAILY_QUOTA (UTC), with the images refused since.
	QuotaReached []QuotaReached `json:"quota_reached,omitempty"`
	// LastError is this dispatcher's latest trouble (Postgres or the
	// provider), cleared by the next job that succeeds.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// ReadStatus reads the queue and the spend from Postgres; budget is the
// monthly budget to compare the spend with. State is "disabled": callers
// that run a dispatcher use Dispatcher.Status.
func ReadStatus(ctx context.Context, db DB, provider string, budget float64) (Status, error) {
	st := Status{Provider: provider, State: "disabled", MonthlyBudgetUSD: budget}
	var oldest *time.Time
	var now time.Time
	err := db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE state IN ('queued', 'failed')),
		       count(*) FILTER (WHERE state IN ('queued', 'failed') AND run_after <= now()),
		       count(*) FILTER (WHERE state = 'running'),
		       count(*) FILTER (WHERE state = 'failed'),
		       count(*) FILTER (WHERE state = 'dead'),
		       count(*) FILTER (WHERE state = 'succeeded'),
		       count(*) FILTER (WHERE state = 'cancelled'),
		       min(run_after) FILTER (WHERE state IN ('queued', 'failed') AND run_after <= now()),
		       (SELECT coalesce(sum(size_bytes), 0) FROM mailslot.image_uploads),
		       now()
		FROM mailslot.image_jobs`).Scan(&st.QueueDepth, &st.Ready, &st.InFlight, &st.Failed, &st.Dead,
		&st.Succeeded, &st.Cancelled, &oldest, &st.UploadBytes, &now)
	if err != nil {
		return Status{}, fmt.Errorf("read image job counts: %w", err)
	}
	if oldest != nil {
		st.OldestReadyAgeSeconds = max(0, now.Sub(*oldest).Seconds())
	}
	sp, err := NewStore(db).MonthToDate(ctx)
	if err != nil {
		return Status{}, err
	}
	st.MonthToDateUSD, st.MonthToDateSeconds = sp.USD, sp.Seconds
	st.QuotaReached, err = quotaReached(ctx, db)
	if err != nil {
		return Status{}, err
	}
	st.BudgetExhausted = budget > 0 && sp.USD >= budget
	if st.BudgetExhausted {
		st.Reason = budgetReason(sp, budget)
	}
	return st, nil
}

// QuotaReached is one property that reached its daily image quota.
type QuotaReached struct {
	Property string `json:"property"`
	Queued   int64  `json:"queued"`
	Refused  int64  `json:"refused"`
}

func quotaReached(ctx context.Context, db DB) ([]QuotaReached, error) {
	rows, err := db.Query(ctx, `
		SELECT property, queued, refused FROM mailslot.image_quota
		WHERE day = (now() AT TIME ZONE 'UTC')::date AND refused > 0
		ORDER BY property LIMIT 100`)
	if err != nil {
		return nil, fmt.Errorf("read image quotas: %w", err)
	}
	defer rows.Close()
	var out []QuotaReached
	for rows.Next() {
		var q QuotaReached
		if err := rows.Scan(&q.Property, &q.Queued, &q.Refused); err != nil {
			return nil, fmt.Errorf("read image quotas: %w", err)
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

func budgetReason(sp Spend, budget float64) string {
	return fmt.Sprintf("monthly budget reached: $%.4f spent of $%.2f since %s; jobs wait for next month or a larger MAILSLOT_IMAGE_MONTHLY_BUDGET",
		sp.USD, budget, sp.MonthStart.Format("2006-01-02"))
}
