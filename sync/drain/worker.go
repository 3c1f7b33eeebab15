package drain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/edge/outbox"
	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/pgschema"
)

// Options configures a Worker.
type Options struct {
	Outbox      *outbox.Outbox
	DatabaseURL string
	NodeID      string
	Region      string
	// BatchSize bounds the rows read and applied at once.
	BatchSize int
	// Interval is how long an idle worker waits before looking again.
	Interval time.Duration
	// Retention is how long synced rows stay in the outbox for
	// reconciliation before they are pruned.
	Retention time.Duration
	// ImageAttempts is max_attempts for image jobs sign-ups bring.
	ImageAttempts int
	// MinBackoff and MaxBackoff bound the wait after a failed batch.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// States a worker reports.
const (
	StateStarting     = "starting"
	StateIdle         = "idle"
	StateSyncing      = "syncing"
	StateBackoff      = "backoff"
	StateSchemaBehind = "schema_behind"
	StateStopped      = "stopped"
)

// Worker drains one outbox into Postgres.
type Worker struct {
	opts    Options
	pool    *pgxpool.Pool
	applier Applier
	log     *slog.Logger

	// cursor and marking belong to the Run goroutine (see step).
	cursor  int64
	rewinds int64
	marking chan error

	mu         sync.Mutex
	state      string
	reachable  bool
	schema     int
	lastOK     time.Time
	lastErr    string
	lastErrAt  time.Time
	synced     int64
	replayed   int64
	batches    int64
	errors     int64
	lastPruned time.Time
}

// New validates the options and prepares a pool without connecting: an
// edge must start, and accept, while Postgres is down.
func New(opts Options) (*Worker, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = 200 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-edge", 2, time.Minute)
	if err != nil {
		return nil, err
	}
	return &Worker{
		opts:    opts,
		pool:    pool,
		applier: Applier{NodeID: opts.NodeID, Region: opts.Region, ImageAttempts: opts.ImageAttempts},
		log:     opts.Logger,
		state:   StateStarting,
	}, nil
}

// Run drains until ctx ends. The batch in flight when ctx ends is either
// committed and marked, or left pending for the next start.
func (w *Worker) Run(ctx context.Context) error {
	defer w.pool.Close()
	defer w.setState(StateStopped)
	defer func() { _ = w.waitMark() }()
	delay := w.opts.MinBackoff
	schemaChecked := time.Time{}
	for ctx.Err() == nil {
		if time.Since(schemaChecked) > 5*time.Minute || w.getSchema() < pgschema.Required() {
			ok, err := w.checkSchema(ctx)
			if err != nil || !ok {
				if err != nil {
					w.fail(err)
					w.setState(StateBackoff) // not "starting" forever when Postgres is down at start
				}
				if !backoff.Sleep(ctx, backoff.Jitter(delay)) {
					break
				}
				delay = min(delay*2, w.opts.MaxBackoff)
				continue
			}
			schemaChecked = time.Now()
		}
		n, err := w.step(ctx)
		if err != nil {
			// Start again from the oldest pending row.
			w.cursor = 0
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			w.fail(err)
			w.setState(StateBackoff)
			if !backoff.Sleep(ctx, backoff.Jitter(delay)) {
				return nil
			}
			delay = min(delay*2, w.opts.MaxBackoff)
			schemaChecked = time.Time{}
		case n < w.opts.BatchSize:
			delay = w.opts.MinBackoff
			w.prune(ctx)
			if n == 0 {
				w.setState(StateIdle)
			} else if err := w.waitMark(); err != nil {
				w.fail(err)
			}
			if !backoff.Sleep(ctx, w.opts.Interval) {
				return nil
			}
		default:
			delay = w.opts.MinBackoff
		}
	}
	return nil
}

// step syncs one batch and returns how many rows it read.
//
// Marking a batch synced in SQLite (one fsync) overlaps with reading,
// decoding and applying the next one: the worker keeps a cursor past the
// rows it has applied, and at most one mark in flight. Any failure waits
// for the mark and starts again from the oldest pending row, so a mark
// that failed is simply a replay that the ledger absorbs.
func (w *Worker) step(ctx context.Context) (int, error) {
	if r := w.opts.Outbox.Rewinds(); r != w.rewinds {
		// Rows behind the cursor are pending again (a reconcile --fix).
		w.rewinds, w.cursor = r, 0
	}
	rows, err := w.opts.Outbox.Pending(ctx, w.cursor, w.opts.BatchSize)
	if err != nil || len(rows) == 0 {
		if merr := w.waitMark(); err == nil {
			err = merr
		}
		// Caught up: the next look starts from the oldest pending row.
		w.cursor = 0
		return 0, err
	}
	w.setState(StateSyncing)
	d, poison := decode(rows)
	for _, p := range poison {
		w.quarantine(ctx, p)
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := w.applier.Apply(bctx, w.pool, d)
	if err != nil {
		if merr := w.waitMark(); merr != nil {
			return 0, merr
		}
		if !isContentError(err) {
			return 0, err
		}
		// One row's content spoils the batch: apply row by row so that the
		// good rows go through and the bad one is set aside.
		if err := w.isolate(ctx, d); err != nil {
			return 0, err
		}
		w.cursor = rows[len(rows)-1].Seq
		return len(rows), nil
	}
	if err := w.waitMark(); err != nil {
		return 0, err
	}
	w.startMark(ctx, d.all)
	w.cursor = rows[len(rows)-1].Seq
	w.succeeded(res)
	return len(rows), nil
}

// startMark marks rows synced in the background.
func (w *Worker) startMark(ctx context.Context, rows []outbox.Row) {
	done := make(chan error, 1)
	w.marking = done
	go func() { done <- w.markSynced(ctx, rows) }()
}

// waitMark waits for the mark in flight. After a failed mark the cursor
// goes back to the start, so that the unmarked rows are read again.
func (w *Worker) waitMark() error {
	if w.marking == nil {
		return nil
	}
	err := <-w.marking
	w.marking = nil
	if err != nil {
		w.cursor = 0
	}
	return err
}

func (w *Worker) markSynced(ctx context.Context, rows []outbox.Row) error {
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		seqs[i] = r.Seq
	}
	// The Postgres commit is done; if marking fails the rows are replayed
	// later and the ledger absorbs the replay.
	if err := w.opts.Outbox.MarkSynced(context.WithoutCancel(ctx), seqs, time.Now()); err != nil {
		return fmt.Errorf("mark %d rows synced: %w", len(seqs), err)
	}
	return nil
}

func (w *Worker) isolate(ctx context.Context, d decoded) error {
	for _, r := range d.all {
		one, _ := decode([]outbox.Row{r})
		res, err := w.applier.Apply(ctx, w.pool, one)
		switch {
		case err == nil:
			if err := w.markSynced(ctx, one.all); err != nil {
				return err
			}
			w.succeeded(res)
		case isContentError(err):
			w.quarantine(ctx, &PoisonError{Seq: r.Seq, Reason: err.Error()})
		default:
			return err
		}
	}
	return nil
}

func (w *Worker) quarantine(ctx context.Context, p *PoisonError) {
	reason := logging.Scrub(p.Reason)
	w.log.Error("quarantined outbox row", "seq", p.Seq, "reason", reason)
	if err := w.opts.Outbox.Quarantine(context.WithoutCancel(ctx), p.Seq, reason); err != nil {
		w.log.Error("quarantine failed", "seq", p.Seq, logging.KeyErr, err)
	}
}

// isContentError reports whether Postgres refused the data itself (data
// exceptions, integrity violations) rather than being unreachable, slow or
// behind: only those make a row poison.
func isContentError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23":
		return true
	}
	return false
}

func (w *Worker) checkSchema(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := pgschema.Version(cctx, w.pool)
	if err != nil {
		return false, err
	}
	w.mu.Lock()
	w.schema, w.reachable = v, true
	w.mu.Unlock()
	if need := pgschema.Required(); v < need {
		msg := fmt.Sprintf("Postgres schema is at version %d, this edge needs %d: run mailslotctl migrate", v, need)
		w.mu.Lock()
		if w.state != StateSchemaBehind {
			w.log.Warn("not syncing", "reason", msg)
		}
		w.state, w.lastErr, w.lastErrAt = StateSchemaBehind, msg, time.Now()
		w.mu.Unlock()
		return false, nil
	}
	w.mu.Lock()
	if w.state == StateSchemaBehind {
		// Migrated: the advice to migrate must not outlive it, even when
		// there is nothing to sync (only a synced batch clears lastErr).
		w.state, w.lastErr = StateIdle, ""
		w.log.Info("schema is current; syncing", "version", v)
	}
	w.mu.Unlock()
	return true, nil
}

func (w *Worker) prune(ctx context.Context) {
	if w.opts.Retention <= 0 || time.Since(w.lastPruned) < time.Minute {
		return
	}
	w.lastPruned = time.Now()
	n, err := w.opts.Outbox.Prune(ctx, time.Now().Add(-w.opts.Retention))
	if err != nil {
		w.log.Warn("prune synced rows", logging.KeyErr, err)
		return
	}
	if n > 0 {
		w.log.Info("pruned synced rows", "rows", n, "retention", w.opts.Retention.String())
	}
}

func (w *Worker) succeeded(res Applied) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reachable = true
	w.lastOK = time.Now()
	w.synced += int64(res.Rows)
	w.replayed += int64(res.Replayed)
	w.batches++
	if w.lastErr != "" {
		w.log.Info("sync recovered")
	}
	w.lastErr = ""
}

func (w *Worker) fail(err error) {
	msg := logging.Scrub(err.Error())
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errors++
	if isUnreachable(err) {
		w.reachable = false
	}
	if msg != w.lastErr {
		w.log.Warn("sync failed; retrying with backoff", logging.KeyErr, msg)
	}
	w.lastErr, w.lastErrAt = msg, time.Now()
}

// isUnreachable tells connection trouble from a refusal by a live server.
func isUnreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 57P01..57P03: admin shutdown, crash shutdown, cannot connect now.
		return pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var netErr net.Error
	return errors.As(err, &netErr) || pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, new(*pgconn.ConnectError))
}

func (w *Worker) setState(s string) {
	w.mu.Lock()
	w.state = s
	w.mu.Unlock()
}

func (w *Worker) getSchema() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.schema
}

// Status is what /v1/sync/status and mailslotctl status show for a node.
type Status struct {
	NodeID                  string     `json:"node_id"`
	Region                  string     `json:"region"`
	State                   string     `json:"state"`
	Pending                 int64      `json:"pending"`
	OldestPendingAgeSeconds float64    `json:"oldest_pending_age_seconds"`
	LastSuccessAt           *time.Time `json:"last_success_at"`
	LastError               string     `json:"last_error,omitempty"`
	LastErrorAt             *time.Time `json:"last_error_at,omitempty"`
	PostgresReachable       bool       `json:"postgres_reachable"`
	SchemaVersion           int        `json:"schema_version"`
	SchemaRequired          int        `json:"schema_required"`
	RowsSynced              int64      `json:"rows_synced"`
	RowsReplayed            int64      `json:"rows_replayed"`
	Batches                 int64      `json:"batches"`
	Errors                  int64      `json:"errors"`
	Quarantined             int64      `json:"quarantined"`
	SyncedRetained          int64      `json:"synced_retained"`
	LastSeq                 int64      `json:"last_seq"`
}

// Status reports the worker's and the outbox's state.
func (w *Worker) Status(ctx context.Context) (Status, error) {
	st, err := w.opts.Outbox.Stats(ctx)
	if err != nil {
		return Status{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		NodeID:            w.opts.NodeID,
		Region:            w.opts.Region,
		State:             w.state,
		Pending:           st.Pending,
		LastError:         w.lastErr,
		PostgresReachable: w.reachable,
		SchemaVersion:     w.schema,
		SchemaRequired:    pgschema.Required(),
		RowsSynced:        w.synced,
		RowsReplayed:      w.replayed,
		Batches:           w.batches,
		Errors:            w.errors,
		Quarantined:       st.Quarantined,
		SyncedRetained:    st.Synced,
		LastSeq:           st.LastSeq,
	}
	if st.OldestPendingAt != nil {
		s.OldestPendingAgeSeconds = time.Since(*st.OldestPendingAt).Seconds()
	}
	if !w.lastOK.IsZero() {
		t := w.lastOK.UTC()
		s.LastSuccessAt = &t
	}
	if !w.lastErrAt.IsZero() && w.lastErr != "" {
		t := w.lastErrAt.UTC()
		s.LastErrorAt = &t
	}
	return s, nil
}
