// Package erasure brings erasures from Postgres to the edge: it pulls new
// tombstones by cursor (their id) and scrubs the outbox rows they cover,
// pending and retained alike, advancing the cursor in the same SQLite
// transaction. Polling keeps it simple and works through any proxy; at the
// default half-second interval an erasure reaches every connected edge well
// within two seconds (docs/BENCHMARKS.md, "Erasure propagation").
//
// A cursor on the id is safe only because ids become visible in id order:
// every transaction that writes a tombstone takes one lock first
// (tombstoneOrderSQL in sync/drain), so a lower id can never commit after
// an edge has pulled a higher one.
package erasure

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/worker"
	"github.com/mailslot/mailslot/outbox"
)

// pageSize bounds the tombstones applied in one outbox transaction.
const pageSize = 500

const pullSQL = `
SELECT id, email_hmac, erased_at FROM mailslot.tombstones
WHERE id > $1 ORDER BY id LIMIT $2`

// Options configures a Puller.
type Options struct {
	Outbox      *outbox.Outbox
	DatabaseURL string
	// Interval is the wait between pulls (DefaultInterval when zero).
	Interval time.Duration
	Logger   *slog.Logger
}

// Defaults for Options.
const (
	DefaultInterval = 500 * time.Millisecond
	// failureBackoff is the puller's first wait after a failed pull.
	failureBackoff = time.Second
)

// Puller is the tombstone worker.
type Puller struct {
	opts Options
	pool *pgxpool.Pool
	log  *slog.Logger
	// health holds the last error (the puller has no states).
	health *worker.Health
	// Signals are for tests: they wait for a pull, or a backoff, on them.
	Signals worker.Signals

	mu       sync.Mutex
	applied  int64
	scrubbed int64
	lastPull time.Time
}

// Status is the puller's part of the node status.
type Status struct {
	Cursor     int64      `json:"cursor"`
	Applied    int64      `json:"applied"`
	RowsErased int64      `json:"rows_erased"`
	LastPullAt *time.Time `json:"last_pull_at,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	// Failing counts tombstones whose scrub failed here and waits for a
	// retry (outbox.ApplyTombstones): the cursor has moved past them, and
	// sync drops the address's rows in Postgres, but this outbox still
	// holds them. FailingSince is the oldest such failure.
	Failing      int        `json:"failing,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// New prepares a Puller without connecting.
func New(opts Options) (*Puller, error) {
	worker.Positive(&opts.Interval, DefaultInterval)
	opts.Logger = worker.Logger(opts.Logger)
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-tombstones", 1, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &Puller{opts: opts, pool: pool, log: opts.Logger, health: worker.NewHealth("")}, nil
}

// Close releases the puller's pool, for a puller that never ran (Run
// closes it when it returns). Closing twice is harmless.
func (p *Puller) Close() { p.pool.Close() }

// Run pulls until ctx ends.
func (p *Puller) Run(ctx context.Context) error {
	defer p.pool.Close()
	// Failures wait jittered, so that a fleet of edges does not come back
	// to a recovered Postgres in step.
	pace := worker.NewPacer(p.opts.Interval, failureBackoff, backoff.DefaultMax, nil, &p.Signals)
	for {
		n, err := p.Pull(ctx)
		ok := true
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.fail(err)
			ok = pace.Backoff(ctx, err)
		case n == pageSize:
			pace.Again()
		default:
			ok = pace.Idle(ctx)
		}
		if !ok {
			return nil
		}
	}
}

// Pull retries the tombstones that failed here and are due, then applies
// one page of new tombstones, and returns how many new ones it took. A
// tombstone that fails does not fail the pull: it is recorded, the cursor
// moves past it, and a later pull retries it (outbox.ApplyTombstones).
func (p *Puller) Pull(ctx context.Context) (int, error) {
	retried, retriedRows, err := p.opts.Outbox.RetryTombstones(ctx, time.Now())
	if err != nil {
		return 0, fmt.Errorf("retry failed tombstones: %w", err)
	}
	if retried > 0 {
		p.log.Info("applied erasures that had failed here", "tombstones", retried, "rows_erased", retriedRows)
		p.mu.Lock()
		p.scrubbed += retriedRows
		p.mu.Unlock()
	}
	cursor, err := p.opts.Outbox.TombstoneCursor(ctx)
	if err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := p.pool.Query(qctx, pullSQL, cursor, pageSize)
	if err != nil {
		return 0, fmt.Errorf("pull tombstones after %d: %w", cursor, err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outbox.Tombstone, error) {
		var t outbox.Tombstone
		err := r.Scan(&t.ID, &t.EmailHMAC, &t.ErasedAt)
		return t, err
	})
	if err != nil {
		return 0, fmt.Errorf("read tombstones: %w", err)
	}
	if len(ts) > 0 {
		n, err := p.opts.Outbox.ApplyTombstones(ctx, ts)
		if err != nil {
			return 0, fmt.Errorf("apply %d tombstones: %w", len(ts), err)
		}
		p.log.Info("applied erasures", "tombstones", len(ts), "rows_erased", n)
		if _, failing, err := p.opts.Outbox.TombstoneFailures(ctx, 0); err == nil && failing > 0 {
			p.log.Warn("erasures failing at this edge; retrying them", "failing", failing)
		}
		p.mu.Lock()
		p.applied += int64(len(ts))
		p.scrubbed += n
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.lastPull = time.Now()
	p.mu.Unlock()
	p.health.Recover("")
	return len(ts), nil
}

func (p *Puller) fail(err error) {
	msg := logging.Scrub(err.Error())
	if p.health.Fail("", msg) {
		p.log.Warn("tombstone pull failed; retrying", logging.KeyErr, msg)
	}
}

// Status reports the cursor and counters.
func (p *Puller) Status(ctx context.Context) (Status, error) {
	cursor, err := p.opts.Outbox.TombstoneCursor(ctx)
	if err != nil {
		return Status{}, err
	}
	oldest, failing, err := p.opts.Outbox.TombstoneFailures(ctx, 1)
	if err != nil {
		return Status{}, err
	}
	_, lastErr, _ := p.health.Snapshot()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Cursor: cursor, Applied: p.applied, RowsErased: p.scrubbed, LastError: lastErr, Failing: failing}
	if len(oldest) > 0 {
		t := oldest[0].FirstFailedAt
		s.FailingSince = &t
	}
	if !p.lastPull.IsZero() {
		t := p.lastPull.UTC()
		s.LastPullAt = &t
	}
	return s, nil
}
