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

	"github.com/mailslot/mailslot/internal/backoff"
	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/pgpool"
	"github.com/mailslot/mailslot/internal/worker"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/pgschema"
)

// Options configures a Worker.
type Options struct {
	Outbox      *outbox.Outbox
	DatabaseURL string
	NodeID      string
	Region      string
	// BatchSize bounds the rows read and applied in one transaction.
	BatchSize int
	// Parallel is how many batches may be in flight at once, each in its
	// own transaction on its own connection (see Worker.step).
	Parallel int
	// Interval is how long an idle worker waits before looking again.
	Interval time.Duration
	// Retention is how long synced rows stay in the outbox for
	// reconciliation before they are pruned.
	Retention time.Duration
	// ImageAttempts is max_attempts for image jobs sign-ups bring.
	ImageAttempts int
	// ImageDailyQuota bounds sign-ups' image jobs per property and day.
	ImageDailyQuota int
	// MinBackoff and MaxBackoff bound the wait after a failed batch.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// OnCommit, when set, is called after every committed batch (the
	// node wakes its webhook deliverer); it must not block.
	OnCommit func()
}

// Defaults for Options.
const (
	DefaultBatchSize = 1000
	DefaultParallel  = 2
	DefaultInterval  = 200 * time.Millisecond
)

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

	// cursor and flights belong to the Run goroutine (see step).
	cursor  int64
	rewinds int64
	flights []*flight

	health *worker.Health
	schema *worker.SchemaGate
	// Signals are for tests: they wait for a round, or a backoff, on them.
	Signals worker.Signals

	mu         sync.Mutex
	reachable  bool
	lastOK     time.Time
	synced     int64
	replayed   int64
	batches    int64
	errors     int64
	lastPruned time.Time
}

// New validates the options and prepares a pool without connecting: an
// edge must start, and accept, while Postgres is down.
func New(opts Options) (*Worker, error) {
	worker.Positive(&opts.BatchSize, DefaultBatchSize)
	worker.Positive(&opts.Parallel, DefaultParallel)
	worker.Positive(&opts.Interval, DefaultInterval)
	worker.Positive(&opts.MinBackoff, backoff.DefaultMin)
	worker.Positive(&opts.MaxBackoff, backoff.DefaultMax)
	opts.Logger = worker.Logger(opts.Logger)
	// One connection per batch in flight, and one for the schema check.
	pool, err := pgpool.Open(opts.DatabaseURL, "mailslot-edge", int32(opts.Parallel)+1, time.Minute)
	if err != nil {
		return nil, err
	}
	return &Worker{
		opts:    opts,
		pool:    pool,
		applier: Applier{NodeID: opts.NodeID, Region: opts.Region, ImageAttempts: opts.ImageAttempts, ImageDailyQuota: opts.ImageDailyQuota},
		log:     opts.Logger,
		health:  worker.NewHealth(StateStarting),
		schema:  worker.NewSchemaGate(pool),
	}, nil
}

// Close releases the worker's pool. Run closes it when it returns; a
// worker that never ran (its node failed to open, or stopped before it
// started) is closed here. Closing twice is harmless.
func (w *Worker) Close() { w.pool.Close() }

// Run drains until ctx ends. Each batch in flight when ctx ends is either
// committed and marked, or left pending for the next start.
func (w *Worker) Run(ctx context.Context) error {
	defer w.pool.Close()
	defer w.setState(StateStopped)
	defer func() { _ = w.settle(ctx) }()
	pace := worker.NewPacer(w.opts.Interval, w.opts.MinBackoff, w.opts.MaxBackoff, nil, &w.Signals)
	for ctx.Err() == nil {
		if w.schema.Due() {
			if err := w.checkSchema(ctx); err != nil {
				if !errors.Is(err, errSchemaBehind) {
					w.fail(err)
					w.setState(StateBackoff) // not "starting" forever when Postgres is down at start
				}
				if !pace.Backoff(ctx, err) {
					break
				}
				continue
			}
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
			w.schema.Recheck()
			if !pace.Backoff(ctx, err) {
				return nil
			}
		case n < w.opts.BatchSize:
			w.prune(ctx)
			if n == 0 {
				w.setState(StateIdle)
			} else if err := w.settle(ctx); err != nil {
				w.fail(err)
				w.cursor = 0
			}
			if !pace.Idle(ctx) {
				return nil
			}
		default:
			pace.Again()
		}
	}
	return nil
}

// step reads one batch, starts applying it, and returns how many rows it
// read.
//
// Up to Options.Parallel batches are in flight at once, each applied in
// its own Postgres transaction and then marked synced in SQLite, while
// this goroutine reads and decodes the next one: the edge's work, the
// marking fsync and Postgres' work overlap, and Postgres can use more than
// one core. Concurrent batches are as safe as two edges' batches: address
// locks order what must be ordered (see lockAddresses), and the lead merge
// does not depend on order. The one link the locks cannot see, an event
// naming a sign-up in a batch still in flight, makes its batch wait for
// that one.
//
// The cursor runs past the batches in flight. Any failure lands every
// flight first, then starts again from the oldest pending row, so a batch
// that failed, or whose mark failed, is simply replayed and the ledger
// absorbs the replay.
func (w *Worker) step(ctx context.Context) (int, error) {
	if r := w.opts.Outbox.Rewinds(); r != w.rewinds {
		// Rows behind the cursor are pending again (a reconcile --fix).
		err := w.settle(ctx)
		w.rewinds, w.cursor = r, 0
		if err != nil {
			return 0, err
		}
	}
	rows, err := w.opts.Outbox.Pending(ctx, w.cursor, w.opts.BatchSize)
	if err != nil || len(rows) == 0 {
		if serr := w.settle(ctx); err == nil {
			err = serr
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
	for len(w.flights) > 0 && (len(w.flights) >= w.opts.Parallel || w.namesSignUpInFlight(d)) {
		if err := w.land(ctx); err != nil {
			_ = w.settle(ctx)
			return 0, err
		}
	}
	w.launch(ctx, d)
	w.cursor = rows[len(rows)-1].Seq
	return len(rows), nil
}

// flight is a batch being applied and marked in the background.
type flight struct {
	d       decoded
	signUps map[string]bool // submission ids of the batch's sign-ups
	done    chan landed
}

type landed struct {
	res     Applied
	err     error // applying
	markErr error
}

func (w *Worker) launch(ctx context.Context, d decoded) {
	f := &flight{d: d, done: make(chan landed, 1)}
	if len(d.leads) > 0 {
		f.signUps = make(map[string]bool, len(d.leads))
		for _, l := range d.leads {
			f.signUps[l.row.ID] = true
		}
	}
	w.flights = append(w.flights, f)
	go func() {
		bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var l landed
		l.res, l.err = w.applier.Apply(bctx, w.pool, d)
		if l.err == nil {
			l.markErr = w.markSynced(ctx, d.all)
		}
		f.done <- l
	}()
}

// namesSignUpInFlight reports whether one of d's events names a sign-up
// that a batch in flight is applying: the event's lead link is resolved
// when it is inserted, so the sign-up must have committed by then.
func (w *Worker) namesSignUpInFlight(d decoded) bool {
	for _, e := range d.events {
		if e.ev.SubmissionID == "" {
			continue
		}
		for _, f := range w.flights {
			if f.signUps[e.ev.SubmissionID] {
				return true
			}
		}
	}
	return false
}

// land waits for the oldest batch in flight and accounts for it.
func (w *Worker) land(ctx context.Context) error {
	f := w.flights[0]
	w.flights = w.flights[1:]
	l := <-f.done
	switch {
	case l.err == nil:
		w.succeeded(l.res)
		return l.markErr
	case isContentError(l.err):
		// One row's content spoils the batch: apply it row by row so that
		// the good rows go through and the bad one is set aside, once the
		// other batches in flight have landed.
		if err := w.settle(ctx); err != nil {
			return err
		}
		return w.isolate(ctx, f.d)
	default:
		return l.err
	}
}

// settle lands every batch in flight and returns the first error.
func (w *Worker) settle(ctx context.Context) error {
	var first error
	for len(w.flights) > 0 {
		if err := w.land(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
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

// errSchemaBehind marks the schema gate's refusal, which Status shows
// as the schema_behind state rather than as a failure.
var errSchemaBehind = errors.New("schema behind")

// checkSchema passes the schema gate, or says why not: errSchemaBehind
// (with the advice to migrate in the status), or the failure to read it.
func (w *Worker) checkSchema(ctx context.Context) error {
	behind, err := w.schema.Check(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.reachable = true
	w.mu.Unlock()
	if behind != "" {
		if w.health.State() != StateSchemaBehind {
			w.log.Warn("not syncing", "reason", behind)
		}
		w.health.Fail(StateSchemaBehind, behind)
		return fmt.Errorf("%w: %s", errSchemaBehind, behind)
	}
	if w.health.State() == StateSchemaBehind {
		// Migrated: the advice to migrate must not outlive it, even when
		// there is nothing to sync (only a synced batch clears lastErr).
		w.health.Recover(StateIdle)
		w.log.Info("schema is current; syncing", "version", w.schema.Version())
	}
	w.ensureEventPartitions(ctx)
	return nil
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
	if w.opts.OnCommit != nil && res.Rows > 0 {
		w.opts.OnCommit()
	}
	w.mu.Lock()
	w.reachable = true
	w.lastOK = time.Now()
	w.synced += int64(res.Rows)
	w.replayed += int64(res.Replayed)
	w.batches++
	w.mu.Unlock()
	if w.health.Recover("") {
		w.log.Info("sync recovered")
	}
}

func (w *Worker) fail(err error) {
	msg := logging.Scrub(err.Error())
	w.mu.Lock()
	w.errors++
	if isUnreachable(err) {
		w.reachable = false
	}
	w.mu.Unlock()
	if w.health.Fail("", msg) {
		w.log.Warn("sync failed; retrying with backoff", logging.KeyErr, msg)
	}
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

func (w *Worker) setState(s string) { w.health.Set(s) }

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
	state, lastErr, lastErrAt := w.health.Snapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		NodeID:            w.opts.NodeID,
		Region:            w.opts.Region,
		State:             state,
		Pending:           st.Pending,
		LastError:         lastErr,
		LastErrorAt:       lastErrAt,
		PostgresReachable: w.reachable,
		SchemaVersion:     w.schema.Version(),
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
	return s, nil
}
