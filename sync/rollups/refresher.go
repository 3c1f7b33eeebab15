// Package rollups keeps the report rollups current from the edge: every
// interval it folds the days that changed into them (report.Refresh).
// Reports are exact without it, since the report views compute changed
// days live, but every day left unfolded is computed again by every
// report, and the marks that say which days changed pile up with each
// sync batch. Every edge with a DATABASE_URL runs one; when another
// edge's refresh is running, a round skips instead of queueing behind it.
package rollups

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/internal/worker"
)

// DefaultInterval is how often the rollups are refreshed: a report reads
// at most about this much of the recent past live from the base tables.
const DefaultInterval = time.Minute

// maxBackoff bounds the wait between failed refreshes.
const maxBackoff = 10 * time.Minute

// statementTimeout bounds one refresh. The first one after a long pause
// folds every day that changed meanwhile.
const statementTimeout = 5 * time.Minute

// Options configures a Refresher.
type Options struct {
	DatabaseURL string
	Interval    time.Duration
	Logger      *slog.Logger
}

// Refresher is the rollup worker.
type Refresher struct {
	opts   Options
	pool   *pgxpool.Pool
	log    *slog.Logger
	health *worker.Health
	schema *worker.SchemaGate
	// Signals are for tests: they wait for a round, or a backoff, on them.
	Signals worker.Signals

	mu   sync.Mutex
	last Status
}

// Status is the refresher's part of the node status.
type Status struct {
	LastRefreshAt *time.Time `json:"last_refresh_at,omitempty"`
	// LeadDays and EventDays are what the last refresh that ran folded:
	// (day, property) pairs of leads and of events.
	LeadDays  int    `json:"lead_days"`
	EventDays int    `json:"event_days"`
	LastError string `json:"last_error,omitempty"`
}

// New prepares a Refresher without connecting.
func New(opts Options) (*Refresher, error) {
	worker.Positive(&opts.Interval, DefaultInterval)
	opts.Logger = worker.Logger(opts.Logger)
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-rollups", 1, statementTimeout)
	if err != nil {
		return nil, err
	}
	return &Refresher{opts: opts, pool: pool, log: opts.Logger, health: worker.NewHealth(""), schema: worker.NewSchemaGate(pool)}, nil
}

// Close releases the refresher's pool, for one that never ran (Run closes
// it when it returns). Closing twice is harmless.
func (r *Refresher) Close() { r.pool.Close() }

// Run refreshes every interval until ctx ends, backing off while Postgres
// fails. An edge whose schema is behind waits for the migration.
func (r *Refresher) Run(ctx context.Context) error {
	defer r.pool.Close()
	pace := worker.NewPacer(r.opts.Interval, max(2*r.opts.Interval, time.Second), maxBackoff, nil, &r.Signals)
	pace.Rounds(ctx, r.Round, r.fail)
	return nil
}

// Round is one refresh, skipped while the schema is behind (the sync says
// so in its status) or another refresh runs.
func (r *Refresher) Round(ctx context.Context) error {
	if r.schema.Due() {
		behind, err := r.schema.Check(ctx)
		if err != nil {
			return fmt.Errorf("check schema before refreshing reports: %w", err)
		}
		if behind != "" {
			return nil
		}
	}
	start := time.Now()
	res, ran, err := report.RefreshUnlessBusy(ctx, r.pool)
	if err != nil {
		r.schema.Recheck()
		return err
	}
	if r.health.Recover("") {
		r.log.Info("report refresh recovered")
	}
	if !ran {
		return nil
	}
	now := time.Now()
	r.mu.Lock()
	r.last.LastRefreshAt, r.last.LeadDays, r.last.EventDays = &now, res.LeadDays, res.EventDays
	r.mu.Unlock()
	if took := time.Since(start); took > r.opts.Interval/2 {
		r.log.Info("report refresh was slow", "lead_days", res.LeadDays, "event_days", res.EventDays, "took", took.Round(time.Millisecond).String())
	}
	return nil
}

// Status reports the last refresh and the last error.
func (r *Refresher) Status() Status {
	r.mu.Lock()
	st := r.last
	r.mu.Unlock()
	_, st.LastError, _ = r.health.Snapshot()
	return st
}

func (r *Refresher) fail(err error) {
	msg := logging.Scrub(err.Error())
	if r.health.Fail("", msg) {
		r.log.Warn("report refresh failed; reports stay exact, only slower", logging.KeyErr, msg)
	}
}
