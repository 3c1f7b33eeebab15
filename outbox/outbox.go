// Package outbox is the edge's durable store: a SQLite file in WAL mode where
// every accepted submission is committed with synchronous=FULL before the
// edge acknowledges it, and from which the sync worker drains rows to
// Postgres.
//
// All writes go through one writer goroutine that groups whatever is queued
// into a single transaction (group commit), so throughput is not bounded by
// one fsync per request and no two writers ever wait on SQLite's busy lock.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mailslot/mailslot/sqliteschema"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the outbox database's name inside the data directory.
const FileName = "outbox.db"

// Errors the outbox answers with. Callers map them to HTTP statuses.
var (
	// ErrFull means the outbox is over one of its limits (pending rows, file
	// size, free disk): the edge must refuse new work until sync catches up.
	ErrFull = errors.New("outbox full")
	// ErrStorage means SQLite could not write (disk full, I/O error); the
	// transaction was rolled back, so nothing half-written remains.
	ErrStorage = errors.New("outbox storage unavailable")
	// ErrIdempotencyConflict means a key was reused with a different body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different body")
	// ErrClosed means the outbox is shutting down.
	ErrClosed = errors.New("outbox closed")
)

// Options configures an Outbox.
type Options struct {
	// Dir is the data directory; the database is Dir/outbox.db.
	Dir    string
	NodeID string
	// GroupCommit batches concurrent submissions into one transaction. Off
	// means one transaction (and one fsync) per submission; it exists to
	// measure what group commit buys.
	GroupCommit bool
	// MaxBatch bounds how many submissions share one transaction.
	MaxBatch int
	// QueueSize bounds how many submissions may wait for the writer.
	QueueSize int
	// MaxPendingRows, MaxBytes and MinFreeBytes are the limits past which
	// the outbox refuses new submissions with ErrFull. Zero disables one.
	MaxPendingRows int64
	MaxBytes       int64
	MinFreeBytes   int64
	// CheckpointEvery runs a background checkpoint at most this often
	// while submissions are committed (see checkpoint); zero leaves every
	// checkpoint to the writer's commits, or to Litestream, which runs its
	// own when the node replicates.
	CheckpointEvery time.Duration
	Logger          *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Outbox is an open outbox file.
type Outbox struct {
	opts   Options
	path   string
	write  *sql.DB // exactly one connection, used only by the writer goroutine
	read   *sql.DB // query_only connections for readers
	log    *slog.Logger
	queue  chan *job
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool

	ck     *sql.DB       // the background checkpoint's connection, or nil
	wrote  chan struct{} // the writer committed since the last checkpoint pass
	ckDone chan struct{}

	pending     atomic.Int64 // rows neither synced nor quarantined
	synced      atomic.Int64 // rows kept for the retention window
	quarantined atomic.Int64
	rewinds     atomic.Int64 // see Rewinds
	lastSeq     atomic.Int64
	overLimit   atomic.Pointer[string] // reason the outbox refuses work, or nil
	lastErr     atomic.Pointer[string]

	// erasureCheckpoint replaces the outbox's own checkpoint after an
	// erasure when Litestream owns checkpoints (SetErasureCheckpoint).
	erasureCheckpoint atomic.Pointer[func(context.Context) error]
	walScrubOwed      atomic.Bool // an erasure's checkpoint has not yet succeeded
}

// Open opens (creating if needed) the outbox in opts.Dir, migrates its
// schema, checks that it belongs to opts.NodeID and starts the writer.
func Open(ctx context.Context, opts Options) (*Outbox, error) {
	opts.defaults()
	if opts.NodeID == "" {
		return nil, errors.New("open outbox: node id is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open outbox: create data dir: %w", err)
	}
	path := filepath.Join(opts.Dir, FileName)
	// busy_timeout is set first so that the journal_mode switch itself can
	// wait for another process (Litestream's restore, an operator's sqlite3)
	// instead of failing at once. _txlock=immediate takes the write lock at
	// BEGIN, so a transaction never fails half-way on a lock upgrade.
	// secure_delete zeroes the bytes of deleted and scrubbed rows, so that
	// an erased address does not linger in free pages (and from there in
	// replica snapshots).
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)&_pragma=secure_delete(ON)&_txlock=immediate"
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if _, err := sqliteschema.Migrate(ctx, write); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	// Each connection's page cache is allocated by SQLite itself (through
	// modernc's libc), outside the Go heap and outside GOMEMLIMIT, 2 MiB
	// each by default. Readers mostly scan forward through pending rows,
	// which the kernel's page cache serves as well, so theirs is 512 KiB:
	// the edge's resident set stays within its budget (docs/ARCHITECTURE.md,
	// "Memory").
	read, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)&_pragma=cache_size(-512)")
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open outbox reader %s: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	o := &Outbox{
		opts:   opts,
		path:   path,
		write:  write,
		read:   read,
		log:    opts.Logger,
		queue:  make(chan *job, opts.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		wrote:  make(chan struct{}, 1),
		ckDone: make(chan struct{}),
	}
	if opts.CheckpointEvery > 0 {
		// synchronous=FULL as on the writer: the WAL is synced before its
		// frames are copied and the database file after.
		if o.ck, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(1000)&_pragma=synchronous(FULL)"); err != nil {
			_ = o.closeDBs()
			return nil, fmt.Errorf("open outbox checkpoint connection %s: %w", path, err)
		}
		o.ck.SetMaxOpenConns(1)
	}
	if err := o.claim(ctx); err != nil {
		_ = o.closeDBs()
		return nil, err
	}
	if err := o.loadCounters(ctx); err != nil {
		_ = o.closeDBs()
		return nil, err
	}
	o.refreshLimits()
	go o.run()
	go o.monitor()
	if o.ck != nil {
		go o.checkpoint(o.ck, opts.CheckpointEvery)
	} else {
		close(o.ckDone)
	}
	return o, nil
}

// claim records the owning node in a new file and refuses a file that
// another node wrote: two nodes sharing one sequence would break the
// uniqueness of (node_id, seq).
func (o *Outbox) claim(ctx context.Context) error {
	var owner string
	err := o.write.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'node_id'").Scan(&owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = o.write.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('node_id', ?)", o.opts.NodeID)
		if err != nil {
			return fmt.Errorf("claim outbox for node: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read outbox owner: %w", err)
	case owner != o.opts.NodeID:
		return fmt.Errorf("outbox %s belongs to node %q, not %q: set MAILSLOT_NODE_ID to its owner or recover it with mailslotctl", o.path, owner, o.opts.NodeID)
	}
	return nil
}

func (o *Outbox) loadCounters(ctx context.Context) error {
	var pending, synced, quarantined, last int64
	err := o.read.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM outbox WHERE synced_at IS NULL AND quarantined_at IS NULL),
		       (SELECT count(*) FROM outbox WHERE synced_at IS NOT NULL),
		       (SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL),
		       COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)`).Scan(&pending, &synced, &quarantined, &last)
	if err != nil {
		return fmt.Errorf("count outbox rows: %w", err)
	}
	o.pending.Store(pending)
	o.synced.Store(synced)
	o.quarantined.Store(quarantined)
	o.lastSeq.Store(last)
	return nil
}

// Path is the database file's path.
func (o *Outbox) Path() string { return o.path }

// NodeID is the node that owns this outbox.
func (o *Outbox) NodeID() string { return o.opts.NodeID }

// DB returns the read-only connection pool, for queries by other packages
// of the edge (sync, status). Writes must go through Submit or Do.
func (o *Outbox) DB() *sql.DB { return o.read }

// Close stops accepting, lets the writer commit what is queued, and closes
// the database. It is safe to call more than once.
func (o *Outbox) Close() error {
	if o.closed.Swap(true) {
		<-o.done
		return nil
	}
	close(o.stop)
	<-o.done
	<-o.ckDone
	return o.closeDBs()
}

func (o *Outbox) closeDBs() error {
	err := errors.Join(o.read.Close(), o.write.Close())
	if o.ck != nil {
		err = errors.Join(err, o.ck.Close())
	}
	return err
}

// storageError wraps SQLite's "cannot write" failures in ErrStorage so that
// callers can answer 503 rather than treating them as a bug.
func storageError(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN:
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	return err
}

// monitor refreshes the size and disk limits once a second; the hot path
// only reads an atomic.
func (o *Outbox) monitor() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
			o.refreshLimits()
		}
	}
}

func (o *Outbox) refreshLimits() {
	reason := o.limitReason()
	if reason == "" {
		o.overLimit.Store(nil)
		return
	}
	if prev := o.overLimit.Load(); prev == nil || *prev != reason {
		o.log.Warn("outbox refusing submissions", "reason", reason)
	}
	o.overLimit.Store(&reason)
}

func (o *Outbox) limitReason() string {
	if max := o.opts.MaxPendingRows; max > 0 && o.pending.Load() >= max {
		return "pending rows at limit " + strconv.FormatInt(max, 10)
	}
	if max := o.opts.MaxBytes; max > 0 {
		if size := o.fileBytes(); size >= max {
			return "outbox file at size limit " + strconv.FormatInt(max, 10)
		}
	}
	if min := o.opts.MinFreeBytes; min > 0 {
		if free, err := freeBytes(o.opts.Dir); err == nil && free < min {
			return "free disk below " + strconv.FormatInt(min, 10) + " bytes"
		}
	}
	return ""
}

// fileBytes is the size of the database and its WAL together.
func (o *Outbox) fileBytes() int64 {
	var total int64
	for _, p := range []string{o.path, o.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// Health reports why the outbox cannot take work, or nil when it can.
func (o *Outbox) Health() error {
	if o.closed.Load() {
		return ErrClosed
	}
	if r := o.overLimit.Load(); r != nil {
		return fmt.Errorf("%w: %s", ErrFull, *r)
	}
	if e := o.lastErr.Load(); e != nil {
		return fmt.Errorf("%w: last write failed: %s", ErrStorage, *e)
	}
	return nil
}
