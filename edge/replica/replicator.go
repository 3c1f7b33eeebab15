package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/benbjohnson/litestream"

	"github.com/mailslot/mailslot/internal/worker"
)

// Source is the database being replicated, as the replicator sees it; an
// *outbox.Outbox is one.
type Source interface {
	// Path is the SQLite file.
	Path() string
	// LastSeq is the highest sequence committed so far.
	LastSeq() int64
	// DB is a read-only pool on the file.
	DB() *sql.DB
}

// Options configures a Replicator.
type Options struct {
	// BaseURL is MAILSLOT_REPLICA_URL with any endpoint already merged in
	// (WithEndpoint).
	BaseURL string
	NodeID  string
	// SyncInterval is how often committed changes are shipped.
	SyncInterval time.Duration
	// Retention bounds how long the replica keeps history (snapshots and
	// the LTX files between them): see Replicator.
	Retention time.Duration
	Logger    *slog.Logger
}

// Replicator ships one SQLite file to its replica. It drives Litestream
// itself rather than letting Litestream's own monitors run, so that every
// successful round is known to have carried a given outbox sequence: it
// reads LastSeq, then converts the WAL and uploads, and only then records
// that sequence as replicated. Litestream's store still runs compaction,
// snapshots and retention.
//
// History is bounded by Retention: a snapshot is taken every Retention/4
// and kept for Retention/2, and Litestream deletes the lower-level files
// older than the last snapshot it deleted. A change (a row scrubbed by an
// erasure) is in the next snapshot within Retention/4; every file from
// before it goes once that snapshot is itself past Retention/2 and the next
// retention check runs, another Retention/4 at most. So what the outbox no
// longer holds is gone from the replica within Retention (plus the minutes
// Litestream's compaction takes), and a restore can reach back at least
// Retention/2.
type Replicator struct {
	opts    Options
	src     Source
	log     *slog.Logger
	nodeURL string
	db      *litestream.DB
	store   *litestream.Store

	startOnce, closeOnce sync.Once
	stop, done           chan struct{}
	closeErr             error

	health *worker.Health
	// Signals are for tests: they wait for a round, or a backoff, on them.
	Signals worker.Signals

	mu            sync.Mutex
	opened        bool
	replicatedSeq int64
	txid          uint64
	lastSyncAt    time.Time
}

// Defaults for Options.
const (
	DefaultSyncInterval = time.Second
	DefaultRetention    = 24 * time.Hour
)

// States a Replicator reports.
const (
	StateStarting    = "starting"
	StateReplicating = "replicating"
	StateFailing     = "failing"
	StateStopped     = "stopped"
)

// New prepares replication of src to its node's replica without touching
// the network: an edge must start while the object store is down.
func New(opts Options, src Source) (*Replicator, error) {
	worker.Positive(&opts.SyncInterval, DefaultSyncInterval)
	worker.Positive(&opts.Retention, DefaultRetention)
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	lsLog := slog.New(warnOnly{opts.Logger.Handler()}).With("component", "litestream")
	client, nodeURL, err := newClient(opts.BaseURL, opts.NodeID, lsLog)
	if err != nil {
		return nil, err
	}
	db := litestream.NewDB(src.Path())
	// Replication is driven by run; Litestream's per-database monitor and
	// the replica's monitor stay off.
	db.MonitorInterval = 0
	r := litestream.NewReplicaWithClient(db, client)
	r.MonitorEnabled = false
	db.Replica = r

	levels := litestream.CompactionLevels{
		{Level: 0},
		{Level: 1, Interval: 30 * time.Second},
		{Level: 2, Interval: 5 * time.Minute},
		{Level: 3, Interval: time.Hour},
	}
	store := litestream.NewStore([]*litestream.DB{db}, levels)
	store.Logger = lsLog
	db.SetLogger(lsLog)
	store.SnapshotRetention = opts.Retention / 2
	store.SnapshotInterval = opts.Retention / 4
	// L0 files (one per round) outlive their compaction into L1 only for
	// readers that follow the replica live; none does here.
	store.SetL0Retention(min(litestream.DefaultL0Retention, opts.Retention/8))
	store.SetShutdownSyncTimeout(10 * time.Second)
	return &Replicator{
		opts:    opts,
		src:     src,
		log:     opts.Logger,
		nodeURL: nodeURL,
		db:      db,
		store:   store,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		health:  worker.NewHealth(StateStarting),
	}, nil
}

// Start begins replicating in the background. Failures (the store is
// unreachable, credentials are wrong) are retried with backoff and shown in
// Status; they never stop the edge.
func (r *Replicator) Start() {
	r.startOnce.Do(func() { go r.run() })
}

func (r *Replicator) run() {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pace := worker.NewPacer(r.opts.SyncInterval, r.opts.SyncInterval, maxFailureBackoff, nil, &r.Signals)
	for {
		err := r.round(ctx)
		ok := true
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.fail(err)
			ok = pace.Backoff(ctx, err)
		default:
			ok = pace.Idle(ctx)
		}
		if !ok {
			return
		}
	}
}

// round opens the store if it is not yet open, then ships what is
// committed.
func (r *Replicator) round(ctx context.Context) error {
	if !r.isOpened() {
		if err := r.store.Open(ctx); err != nil {
			return fmt.Errorf("open replica %s: %w", Display(r.nodeURL), err)
		}
		r.mu.Lock()
		r.opened = true
		r.mu.Unlock()
	}
	seq := r.src.LastSeq()
	if err := r.db.SyncAndWait(ctx); err != nil {
		return fmt.Errorf("replicate to %s: %w", Display(r.nodeURL), err)
	}
	r.succeeded(seq)
	return nil
}

// CheckpointTruncate copies the WAL into the database and truncates it
// through Litestream, which holds a read transaction for replication and
// so must run the checkpoint itself: after an erasure the erased rows'
// old pages then leave outbox.db-wal (frames not yet shipped are shipped
// first; the replica keeps its own history, see docs/SECURITY.md).
func (r *Replicator) CheckpointTruncate(ctx context.Context) error {
	if err := r.db.Checkpoint(ctx, litestream.CheckpointModeTruncate); err != nil {
		return fmt.Errorf("checkpoint outbox through the replica: %w", err)
	}
	return nil
}

func (r *Replicator) isOpened() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opened
}

func (r *Replicator) succeeded(seq int64) {
	pos := r.db.Replica.Pos()
	if r.health.Recover(StateReplicating) {
		r.log.Info("replication recovered", "replica", Display(r.nodeURL))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replicatedSeq = max(r.replicatedSeq, seq)
	r.txid = uint64(pos.TXID)
	r.lastSyncAt = time.Now()
}

func (r *Replicator) fail(err error) {
	if r.health.Fail(StateFailing, err.Error()) {
		r.log.Warn("replication failed; retrying with backoff", "err", err)
	}
}

// Close flushes: call it after the source's last write (after the outbox
// writer has closed). It ships everything committed, within ctx, and then
// stops Litestream. A replica that cannot be reached is reported in the
// error; the local file is untouched either way.
func (r *Replicator) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.startOnce.Do(func() { close(r.done) }) // never started
		close(r.stop)
		<-r.done
		err := r.round(ctx)
		if err != nil {
			r.fail(err)
		}
		closeErr := r.store.Close(ctx)
		if errors.Is(closeErr, litestream.ErrShutdownInterrupted) {
			closeErr = nil
		}
		st := r.Status(context.WithoutCancel(ctx))
		if err == nil {
			r.log.Info("replica flushed", "replica", Display(r.nodeURL), "replicated_seq", st.ReplicatedSeq, "txid", st.TXID)
		}
		r.health.Set(StateStopped)
		r.closeErr = errors.Join(err, closeErr)
	})
	return r.closeErr
}

// Status is the replica's state for /v1/sync/status and metrics.
type Status struct {
	// Replica is the node's replica URL without credentials or query.
	Replica string `json:"replica"`
	State   string `json:"state"`
	// ReplicatedSeq is the highest outbox sequence known to be in the
	// replica; LastSeq the highest committed locally.
	ReplicatedSeq int64 `json:"replicated_seq"`
	LastSeq       int64 `json:"last_seq"`
	// TXID is Litestream's position in the replica.
	TXID uint64 `json:"txid"`
	// LagSeconds is the age of the oldest committed row not yet known to
	// be in the replica: what losing the volume now would lose, in time.
	LagSeconds  float64    `json:"lag_seconds"`
	LastSyncAt  *time.Time `json:"last_sync_at"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Status reports where replication stands.
func (r *Replicator) Status(ctx context.Context) Status {
	st := Status{Replica: Display(r.nodeURL)}
	st.State, st.LastError, st.LastErrorAt = r.health.Snapshot()
	r.mu.Lock()
	st.ReplicatedSeq, st.TXID = r.replicatedSeq, r.txid
	if !r.lastSyncAt.IsZero() {
		t := r.lastSyncAt.UTC()
		st.LastSyncAt = &t
	}
	r.mu.Unlock()
	st.LastSeq = r.src.LastSeq()
	if st.LastSeq > st.ReplicatedSeq {
		st.LagSeconds = r.lag(ctx, st.ReplicatedSeq)
	}
	return st
}

// lag is the age of the first row after seq. Rows are stamped when they
// are accepted, a few milliseconds before their commit.
func (r *Replicator) lag(ctx context.Context, seq int64) float64 {
	var ms sql.NullInt64
	err := r.src.DB().QueryRowContext(ctx, `SELECT received_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1`, seq).Scan(&ms)
	if err != nil || !ms.Valid {
		return 0
	}
	return max(0, time.Since(time.UnixMilli(ms.Int64)).Seconds())
}

// maxFailureBackoff bounds the wait between failed replication rounds.
const maxFailureBackoff = time.Minute
