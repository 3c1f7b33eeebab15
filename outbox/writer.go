package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailslot/mailslot"
)

// Record is one row to append.
type Record struct {
	ID         string
	Kind       mailslot.Kind
	ReceivedAt time.Time
	Payload    []byte // normalized JSON
	EmailHMAC  []byte
	IPHMAC     []byte
}

// Submission is one request's worth of records, stored all or nothing.
type Submission struct {
	Records []Record
	// IdemKey, when set, makes a retry of the same body answer with the
	// first Receipt and store nothing. Keys are scoped by the first
	// record's kind.
	IdemKey  string
	BodyHash []byte
	// Response is what a retry is answered with (the first submission id).
	Response string
}

// Receipt is the outbox's answer to a stored (or replayed) submission.
type Receipt struct {
	FirstSeq int64
	LastSeq  int64
	Response string
	Replayed bool
}

// Tx is the transaction a Do function runs in. Its Add methods keep the
// outbox's row counters true when the function adds, syncs, quarantines,
// requeues or prunes rows: the counters are what status and metrics read,
// so that neither has to count a large outbox.
type Tx struct {
	*sql.Tx
	delta counts
}

// counts is the number of rows in each state.
type counts struct {
	pending, synced, quarantined int64
}

func (c *counts) add(d counts) {
	c.pending += d.pending
	c.synced += d.synced
	c.quarantined += d.quarantined
}

// AddPending adjusts the pending-row counter by n once the transaction
// commits.
func (tx *Tx) AddPending(n int64) { tx.delta.pending += n }

// AddSynced adjusts the synced-row counter by n once the transaction
// commits.
func (tx *Tx) AddSynced(n int64) { tx.delta.synced += n }

// AddQuarantined adjusts the quarantined-row counter by n once the
// transaction commits.
func (tx *Tx) AddQuarantined(n int64) { tx.delta.quarantined += n }

type job struct {
	ctx  context.Context
	sub  *Submission
	fn   func(ctx context.Context, tx *Tx) error
	done chan result
}

type result struct {
	receipt Receipt
	err     error
}

const insertSQL = `INSERT INTO outbox (id, node_id, kind, received_at, idem_key, payload, email_hmac, ip_hmac)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// Submit stores sub durably and returns once its transaction is committed
// and fsynced. It refuses new work with ErrFull while the outbox is over a
// limit.
func (o *Outbox) Submit(ctx context.Context, sub Submission) (Receipt, error) {
	if len(sub.Records) == 0 {
		return Receipt{}, errors.New("submit: no records")
	}
	if err := o.Health(); err != nil && !errors.Is(err, ErrStorage) {
		return Receipt{}, err
	}
	r := o.enqueue(ctx, &job{ctx: ctx, sub: &sub, done: make(chan result, 1)})
	return r.receipt, r.err
}

// Do runs fn inside the writer's next transaction, after the submissions
// queued before it. A failing fn is rolled back to a savepoint without
// affecting the submissions it shares the transaction with.
func (o *Outbox) Do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return o.enqueue(ctx, &job{ctx: ctx, fn: fn, done: make(chan result, 1)}).err
}

func (o *Outbox) enqueue(ctx context.Context, j *job) result {
	if o.closed.Load() {
		return result{err: ErrClosed}
	}
	select {
	case o.queue <- j:
	case <-ctx.Done():
		return result{err: ctx.Err()}
	case <-o.done:
		return result{err: ErrClosed}
	}
	select {
	case r := <-j.done:
		return r
	case <-ctx.Done():
		return result{err: ctx.Err()}
	case <-o.done:
		select {
		case r := <-j.done:
			return r
		default:
			return result{err: ErrClosed}
		}
	}
}

// run is the single writer. It takes whatever is queued, up to MaxBatch
// jobs, and commits it in one transaction: while one fsync is in progress
// the next batch accumulates, so the fsync rate stays flat as load grows.
func (o *Outbox) run() {
	defer close(o.done)
	ins, err := prepareInserts(o.write)
	if err != nil {
		o.log.Error("prepare outbox insert", "err", err)
		o.drainFailing(fmt.Errorf("prepare outbox insert: %w", err))
		return
	}
	defer ins.close()
	batch := make([]*job, 0, o.opts.MaxBatch)
	max := o.opts.MaxBatch
	if !o.opts.GroupCommit {
		max = 1
	}
	for {
		select {
		case j := <-o.queue:
			o.commit(ins, o.fill(append(batch[:0], j), max))
		case <-o.stop:
			// Commit what was queued before the stop, then quit.
			for b := o.fill(batch[:0], max); len(b) > 0; b = o.fill(batch[:0], max) {
				o.commit(ins, b)
			}
			return
		}
	}
}

// fill adds queued jobs to batch without waiting, up to max.
func (o *Outbox) fill(batch []*job, max int) []*job {
	for len(batch) < max {
		select {
		case j := <-o.queue:
			batch = append(batch, j)
		default:
			return batch
		}
	}
	return batch
}

func (o *Outbox) drainFailing(err error) {
	for {
		select {
		case j := <-o.queue:
			j.done <- result{err: err}
		case <-o.stop:
			return
		}
	}
}

// inserts holds the writer's prepared INSERTs of 1, 2, 4 … maxInsertRows
// rows. They are prepared before the writer starts: the write pool has one
// connection, which a transaction holds, so nothing can be prepared
// outside it while a batch is open. Only the writer goroutine uses them.
type inserts struct {
	byLen map[int]*sql.Stmt
}

// maxInsertRows bounds the rows of one INSERT (8 parameters each, far
// below SQLite's limit); it is a power of two.
const maxInsertRows = 64

func prepareInserts(db *sql.DB) (*inserts, error) {
	in := &inserts{byLen: map[int]*sql.Stmt{}}
	for n := 1; n <= maxInsertRows; n *= 2 {
		st, err := db.Prepare(insertSQL + strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?)", n-1))
		if err != nil {
			in.close()
			return nil, err
		}
		in.byLen[n] = st
	}
	return in, nil
}

// chunk is the largest prepared row count not above n.
func (in *inserts) chunk(n int) int {
	c := maxInsertRows
	for c > n {
		c /= 2
	}
	return c
}

func (in *inserts) close() {
	for _, st := range in.byLen {
		_ = st.Close()
	}
}

// commit applies one batch in one transaction and answers every job in it.
//
// Consecutive submissions without an idempotency key, the usual case, go
// in multi-row INSERTs: one statement for up to maxInsertRows records
// costs SQLite one program run and one AUTOINCREMENT update instead of one
// per record. Keyed submissions and Do functions run one at a time in
// queue order, so seqs still follow the order jobs were queued in.
func (o *Outbox) commit(ins *inserts, batch []*job) {
	results := make([]result, len(batch))
	var inserted int64
	var delta counts
	err := func() error {
		tx, err := o.write.Begin()
		if err != nil {
			return fmt.Errorf("begin outbox batch: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		var plain []int // indexes of unkeyed submissions not yet inserted
		flush := func() error {
			n, err := o.insertPlain(tx, ins, batch, plain, results)
			inserted += n
			plain = plain[:0]
			return err
		}
		for i, j := range batch {
			if j.sub != nil && j.sub.IdemKey == "" {
				plain = append(plain, i)
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if j.sub != nil {
				rc, n, err := o.insert(tx, tx.Stmt(ins.byLen[1]), j.sub)
				if err != nil && !errors.Is(err, ErrIdempotencyConflict) {
					return err
				}
				results[i] = result{receipt: rc, err: err}
				inserted += n
				continue
			}
			d, err := o.runFn(j, tx)
			if err != nil && isStorage(err) {
				return err
			}
			results[i] = result{err: err}
			delta.add(d)
		}
		if err := flush(); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit outbox batch: %w", err)
		}
		return nil
	}()
	if err != nil {
		err = storageError(err)
		msg := err.Error()
		o.lastErr.Store(&msg)
		o.log.Error("outbox batch failed", "jobs", len(batch), "err", err)
		for _, j := range batch {
			j.done <- result{err: err}
		}
		return
	}
	o.lastErr.Store(nil)
	select {
	case o.wrote <- struct{}{}:
	default:
	}
	o.synced.Add(delta.synced)
	o.quarantined.Add(delta.quarantined)
	if p := o.pending.Add(inserted + delta.pending); o.opts.MaxPendingRows > 0 && p >= o.opts.MaxPendingRows {
		// Refuse from the next submission on, not from the monitor's next
		// tick: a second at full speed is thousands of rows past the limit.
		o.refreshLimits()
	}
	for i, j := range batch {
		if rc := results[i].receipt; rc.LastSeq > o.lastSeq.Load() {
			o.lastSeq.Store(rc.LastSeq)
		}
		j.done <- results[i]
	}
}

func isStorage(err error) bool { return errors.Is(storageError(err), ErrStorage) }

func (o *Outbox) runFn(j *job, tx *sql.Tx) (counts, error) {
	if _, err := tx.Exec("SAVEPOINT job"); err != nil {
		return counts{}, fmt.Errorf("savepoint: %w", err)
	}
	t := &Tx{Tx: tx}
	if err := j.fn(j.ctx, t); err != nil {
		if _, rerr := tx.Exec("ROLLBACK TO job; RELEASE job"); rerr != nil {
			return counts{}, fmt.Errorf("roll back job: %w (after %w)", rerr, err)
		}
		return counts{}, err
	}
	if _, err := tx.Exec("RELEASE job"); err != nil {
		return counts{}, fmt.Errorf("release savepoint: %w", err)
	}
	return t.delta, nil
}

// insert stores one submission, or answers it from the idempotency table.
// It returns the number of rows inserted.
func (o *Outbox) insert(tx *sql.Tx, stmt *sql.Stmt, sub *Submission) (Receipt, int64, error) {
	var idemKey any
	if sub.IdemKey != "" {
		key := string(sub.Records[0].Kind) + ":" + sub.IdemKey
		idemKey = sub.IdemKey
		var hash []byte
		var rc Receipt
		err := tx.QueryRow(`SELECT body_hash, response, first_seq FROM idempotency WHERE key = ?`, key).
			Scan(&hash, &rc.Response, &rc.FirstSeq)
		switch {
		case err == nil:
			if !bytes.Equal(hash, sub.BodyHash) {
				return Receipt{}, 0, ErrIdempotencyConflict
			}
			rc.Replayed = true
			rc.LastSeq = rc.FirstSeq
			return rc, 0, nil
		case !errors.Is(err, sql.ErrNoRows):
			return Receipt{}, 0, fmt.Errorf("look up idempotency key: %w", err)
		}
	}
	rc := Receipt{Response: sub.Response}
	for _, r := range sub.Records {
		res, err := stmt.Exec(r.ID, o.opts.NodeID, string(r.Kind), r.ReceivedAt.UnixMilli(), idemKey,
			string(r.Payload), nullBytes(r.EmailHMAC), nullBytes(r.IPHMAC))
		if err != nil {
			return Receipt{}, 0, fmt.Errorf("insert outbox row: %w", err)
		}
		seq, err := res.LastInsertId()
		if err != nil {
			return Receipt{}, 0, fmt.Errorf("read outbox seq: %w", err)
		}
		if rc.FirstSeq == 0 {
			rc.FirstSeq = seq
		}
		rc.LastSeq = seq
	}
	if sub.IdemKey != "" {
		_, err := tx.Exec(`INSERT INTO idempotency (key, body_hash, response, first_seq, created_at) VALUES (?, ?, ?, ?, ?)`,
			string(sub.Records[0].Kind)+":"+sub.IdemKey, sub.BodyHash, sub.Response, rc.FirstSeq, time.Now().UnixMilli())
		if err != nil {
			return Receipt{}, 0, fmt.Errorf("record idempotency key: %w", err)
		}
	}
	return rc, int64(len(sub.Records)), nil
}

// insertPlain inserts the records of the unkeyed submissions batch[idx...]
// in multi-row INSERTs and sets their receipts. Within one statement
// AUTOINCREMENT gives rows consecutive seqs in VALUES order, so the last
// insert id names every row's seq.
func (o *Outbox) insertPlain(tx *sql.Tx, ins *inserts, batch []*job, idx []int, results []result) (int64, error) {
	var recs []*Record
	for _, i := range idx {
		for k := range batch[i].sub.Records {
			recs = append(recs, &batch[i].sub.Records[k])
		}
	}
	seqs := make([]int64, 0, len(recs))
	args := make([]any, 0, 8*min(len(recs), maxInsertRows))
	for len(seqs) < len(recs) {
		chunk := recs[len(seqs) : len(seqs)+ins.chunk(len(recs)-len(seqs))]
		st := ins.byLen[len(chunk)]
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r.ID, o.opts.NodeID, string(r.Kind), r.ReceivedAt.UnixMilli(), nil,
				string(r.Payload), nullBytes(r.EmailHMAC), nullBytes(r.IPHMAC))
		}
		res, err := tx.Stmt(st).Exec(args...)
		if err != nil {
			return 0, fmt.Errorf("insert %d outbox rows: %w", len(chunk), err)
		}
		last, err := res.LastInsertId()
		if err != nil {
			return 0, fmt.Errorf("read outbox seq: %w", err)
		}
		for k := range chunk {
			seqs = append(seqs, last-int64(len(chunk)-1-k))
		}
	}
	at := 0
	for _, i := range idx {
		sub := batch[i].sub
		n := len(sub.Records)
		results[i] = result{receipt: Receipt{FirstSeq: seqs[at], LastSeq: seqs[at+n-1], Response: sub.Response}}
		at += n
	}
	return int64(len(recs)), nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
