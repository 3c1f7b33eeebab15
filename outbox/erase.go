package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/addrscrub"
	"github.com/mailslot/mailslot/internal/logging"
)

// Tombstone is an erasure as edges learn it from Postgres.
type Tombstone struct {
	ID        int64
	EmailHMAC []byte
	ErasedAt  time.Time
}

// Erasure never binds one variable per row: every statement below takes the
// address's hash and a time, and finds the rows itself (subqueries rather
// than IN lists), so no statement grows with the data. An address signed up
// 40,000 times is erased by the same five statements as one signed up once;
// an IN list of its seqs would pass SQLite's 32,766-variable limit, fail the
// erasure, and (in ApplyTombstones) fail the same page of tombstones for
// ever. In every statement ?1 is the hash (or the address) and ?2 the
// erasure time in unix milliseconds.
const (
	// eraseAddressesSQL is the address as the sign-ups spelled it, so that
	// it can be found inside event payloads, which carry no hash. Bounded:
	// one normalized address has one hash, and the LIMIT keeps a file with
	// many spellings from growing the list.
	eraseAddressesSQL = `
		SELECT DISTINCT json_extract(payload, '$.email') FROM outbox
		WHERE email_hmac = ?1 AND kind = 'lead' AND json_valid(payload) AND json_extract(payload, '$.email') IS NOT NULL
		LIMIT 8`

	// Events that name an erased sign-up keep the event, not the link.
	unlinkEventsSQL = `
		UPDATE outbox SET payload = json_remove(payload, '$.submission_id'), ip_hmac = NULL
		WHERE kind = 'event' AND json_extract(payload, '$.submission_id') IN (` + "SELECT id FROM outbox WHERE email_hmac = ?1 AND received_at <= ?2 AND kind IN ('lead', 'consent')" + `)`

	// Events whose payload holds the address, however wrapped or encoded,
	// keep everything else (mailslot_redact_address, below).
	redactEventsSQL = `
		UPDATE outbox SET payload = mailslot_redact_address(payload, ?1)
		WHERE kind = 'event' AND received_at <= ?2 AND mailslot_redact_address(payload, ?1) IS NOT NULL`

	forgetKeysSQL = `DELETE FROM idempotency WHERE first_seq IN (` + "SELECT seq FROM outbox WHERE email_hmac = ?1 AND received_at <= ?2 AND kind IN ('lead', 'consent')" + `)`

	scrubRowsSQL = `
		UPDATE outbox SET payload = '` + mailslot.ErasedPayload + `', email_hmac = NULL, ip_hmac = NULL,
		    idem_key = NULL, quarantine_reason = NULL
		WHERE email_hmac = ?1 AND received_at <= ?2 AND kind IN ('lead', 'consent')`
)

func init() {
	// mailslot_redact_address(payload, address) is the payload with the
	// address replaced inside every JSON string (addrscrub), or NULL when
	// it holds none. A payload that is not JSON is searched as text.
	sqlite.MustRegisterDeterministicScalarFunction("mailslot_redact_address", 2,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			payload, ok1 := text(args[0])
			addr, ok2 := text(args[1])
			if !ok1 || !ok2 {
				return nil, nil
			}
			m, err := matcher(addr)
			if err != nil {
				return nil, nil
			}
			out, found, err := m.RedactJSON([]byte(payload))
			if err != nil {
				s, found := m.Redact(payload)
				if !found {
					return nil, nil
				}
				return s, nil
			}
			if !found {
				return nil, nil
			}
			return string(out), nil
		})
}

func text(v driver.Value) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// matcher keeps the last address's compiled pattern: one erasure calls the
// function once per event row with the same address.
var matchers struct {
	sync.Mutex
	addr string
	m    *addrscrub.Matcher
}

func matcher(addr string) (*addrscrub.Matcher, error) {
	matchers.Lock()
	defer matchers.Unlock()
	if matchers.m != nil && matchers.addr == addr {
		return matchers.m, nil
	}
	m, err := addrscrub.New(addr)
	if err != nil {
		return nil, err
	}
	matchers.addr, matchers.m = addr, m
	return m, nil
}

// Erase scrubs every row of the address captured up to upTo: sign-ups and
// consent changes lose their payload and hashes, events that name one of
// those sign-ups lose the link, events that quote the address lose it, and
// the rows' idempotency keys are forgotten. Erasure requests themselves are
// kept: they carry only the hash, and Postgres needs them. Once the
// erasure commits, the WAL is checkpointed so that it no longer holds the
// erased bytes (checkpointErased).
func (o *Outbox) Erase(ctx context.Context, emailHMAC []byte, upTo time.Time) (int64, error) {
	var n int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		n, err = erase(ctx, tx, emailHMAC, upTo)
		return err
	})
	// On an error the job may still run later in the writer (the caller's
	// context ended first): its results are not ours to read.
	if err != nil {
		return 0, err
	}
	if n > 0 {
		o.checkpointErased(ctx)
	}
	return n, nil
}

// ApplyTombstones erases each tombstone's rows and advances the pull cursor
// past the whole page in the same transaction, so that a crash never skips
// one.
//
// Each tombstone runs in its own savepoint. One whose scrub fails for any
// reason but a storage error (which would fail every write alike, so the
// page is retried whole) is rolled back alone, recorded in
// tombstone_failures, and retried by RetryTombstones with backoff; the
// cursor moves on, so one tombstone can never keep the erasures after it
// from this edge. Erasure still wins meanwhile: Postgres holds the
// tombstone, and sync drops every row of the address that this edge
// delivers, whatever its outbox still says. What waits for the retry is
// the scrub of the local copy, which the edge's status counts.
func (o *Outbox) ApplyTombstones(ctx context.Context, ts []Tombstone) (int64, error) {
	var total int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var cursor int64
		n, _, err := applyEach(ctx, tx, ts, time.Now())
		if err != nil {
			return err
		}
		total = n
		for _, t := range ts {
			cursor = max(cursor, t.ID)
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO meta (name, value) VALUES ('tombstone_cursor', ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value
			WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)`, cursor)
		if err != nil {
			return fmt.Errorf("advance tombstone cursor: %w", err)
		}
		return nil
	})
	// On an error the job may still run later in the writer (the caller's
	// context ended first): its results are not ours to read.
	if err != nil {
		return 0, err
	}
	if total > 0 {
		o.checkpointErased(ctx)
	}
	return total, nil
}

// retryBatch bounds the failed tombstones one RetryTombstones call takes.
const retryBatch = 100

// RetryTombstones retries the recorded failures that are due at now and
// returns how many of them applied and how many rows they scrubbed.
func (o *Outbox) RetryTombstones(ctx context.Context, now time.Time) (applied int, rows int64, err error) {
	err = o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		q, err := tx.QueryContext(ctx, `SELECT id, email_hmac, erased_at FROM tombstone_failures
			WHERE next_attempt_at <= ? ORDER BY id LIMIT ?`, now.UnixMilli(), retryBatch)
		if err != nil {
			return fmt.Errorf("read failed tombstones: %w", err)
		}
		var ts []Tombstone
		for q.Next() {
			var t Tombstone
			var at int64
			if err := q.Scan(&t.ID, &t.EmailHMAC, &at); err != nil {
				q.Close()
				return fmt.Errorf("read failed tombstone: %w", err)
			}
			t.ErasedAt = time.UnixMilli(at).UTC()
			ts = append(ts, t)
		}
		q.Close()
		if err := q.Err(); err != nil {
			return fmt.Errorf("read failed tombstones: %w", err)
		}
		rows, applied, err = applyEach(ctx, tx, ts, now)
		return err
	})
	// On an error the job may still run later in the writer (the caller's
	// context ended first): its results are not ours to read.
	if err != nil {
		return 0, 0, err
	}
	if rows > 0 {
		o.checkpointErased(ctx)
	}
	return applied, rows, nil
}

// TombstoneFailure is a tombstone whose scrub failed here and waits to be
// retried. LastError holds no address: erasure binds only hashes.
type TombstoneFailure struct {
	Tombstone
	Attempts      int       `json:"attempts"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
	LastError     string    `json:"last_error"`
}

// TombstoneFailures lists the failed tombstones, oldest first, at most
// limit of them, and how many there are in all.
func (o *Outbox) TombstoneFailures(ctx context.Context, limit int) ([]TombstoneFailure, int, error) {
	var n int
	if err := o.read.QueryRowContext(ctx, `SELECT count(*) FROM tombstone_failures`).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("count failed tombstones: %w", err)
	}
	rows, err := o.read.QueryContext(ctx, `SELECT id, email_hmac, erased_at, attempts, first_failed_at, next_attempt_at, last_error
		FROM tombstone_failures ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list failed tombstones: %w", err)
	}
	defer rows.Close()
	var out []TombstoneFailure
	for rows.Next() {
		var f TombstoneFailure
		var at, first, next int64
		if err := rows.Scan(&f.ID, &f.EmailHMAC, &at, &f.Attempts, &first, &next, &f.LastError); err != nil {
			return nil, 0, fmt.Errorf("read failed tombstone: %w", err)
		}
		f.ErasedAt, f.FirstFailedAt, f.NextAttemptAt = time.UnixMilli(at).UTC(), time.UnixMilli(first).UTC(), time.UnixMilli(next).UTC()
		out = append(out, f)
	}
	return out, n, rows.Err()
}

// retryDelay is the wait after a tombstone's attempts-th failure: 1 s,
// doubling, at most an hour.
func retryDelay(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 12)
	return min(d, time.Hour)
}

// applyEach erases each tombstone in its own savepoint and records the
// ones that fail (see ApplyTombstones). It returns the rows scrubbed and
// how many tombstones applied.
func applyEach(ctx context.Context, tx *Tx, ts []Tombstone, now time.Time) (int64, int, error) {
	var total int64
	applied := 0
	for _, t := range ts {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT tombstone"); err != nil {
			return 0, 0, fmt.Errorf("savepoint for tombstone %d: %w", t.ID, err)
		}
		n, err := erase(ctx, tx, t.EmailHMAC, t.ErasedAt)
		if err == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM tombstone_failures WHERE id = ?`, t.ID)
		}
		if err != nil {
			if ctx.Err() != nil || isStorage(err) {
				return 0, 0, fmt.Errorf("apply tombstone %d: %w", t.ID, err)
			}
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO tombstone; RELEASE tombstone"); rerr != nil {
				return 0, 0, fmt.Errorf("roll back tombstone %d: %w (after %w)", t.ID, rerr, err)
			}
			if rerr := recordFailure(ctx, tx, t, now, err); rerr != nil {
				return 0, 0, rerr
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, "RELEASE tombstone"); err != nil {
			return 0, 0, fmt.Errorf("release tombstone %d: %w", t.ID, err)
		}
		total += n
		applied++
	}
	return total, applied, nil
}

func recordFailure(ctx context.Context, tx *Tx, t Tombstone, now time.Time, cause error) error {
	var attempts int
	err := tx.QueryRowContext(ctx, `SELECT attempts FROM tombstone_failures WHERE id = ?`, t.ID).Scan(&attempts)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read failures of tombstone %d: %w", t.ID, err)
	}
	attempts++
	msg := logging.Scrub(cause.Error())
	_, err = tx.ExecContext(ctx, `
		INSERT INTO tombstone_failures (id, email_hmac, erased_at, attempts, first_failed_at, next_attempt_at, last_error)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
		    last_error = excluded.last_error`,
		t.ID, t.EmailHMAC, t.ErasedAt.UnixMilli(), attempts, now.UnixMilli(), now.Add(retryDelay(attempts)).UnixMilli(), msg)
	if err != nil {
		return fmt.Errorf("record failure of tombstone %d: %w", t.ID, err)
	}
	return nil
}

// TombstoneCursor is the id of the last tombstone applied here.
func (o *Outbox) TombstoneCursor(ctx context.Context) (int64, error) {
	var c int64
	err := o.read.QueryRowContext(ctx, `SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'tombstone_cursor'), 0)`).Scan(&c)
	if err != nil {
		return 0, fmt.Errorf("read tombstone cursor: %w", err)
	}
	return c, nil
}

// erase runs the erasure statements in order: the address is read from
// the sign-ups and events are unlinked and redacted before the sign-ups
// lose what those steps find them by.
func erase(ctx context.Context, tx *Tx, emailHMAC []byte, upTo time.Time) (int64, error) {
	at := upTo.UnixMilli()
	rows, err := tx.QueryContext(ctx, eraseAddressesSQL, emailHMAC)
	if err != nil {
		return 0, fmt.Errorf("read erased address: %w", err)
	}
	var addrs []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read erased address: %w", err)
		}
		addrs = append(addrs, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read erased address: %w", err)
	}
	if _, err := tx.ExecContext(ctx, unlinkEventsSQL, emailHMAC, at); err != nil {
		return 0, fmt.Errorf("unlink events from erased rows: %w", err)
	}
	for _, a := range addrs {
		if _, err := tx.ExecContext(ctx, redactEventsSQL, a, at); err != nil {
			return 0, fmt.Errorf("redact address from events: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, forgetKeysSQL, emailHMAC, at); err != nil {
		return 0, fmt.Errorf("forget idempotency keys of erased rows: %w", err)
	}
	res, err := tx.ExecContext(ctx, scrubRowsSQL, emailHMAC, at)
	if err != nil {
		return 0, fmt.Errorf("erase rows: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("count erased rows: %w", err)
	}
	return n, nil
}

// EraseAndRecord scrubs the address's rows up to rec.ReceivedAt and stores
// rec (the erasure request that Postgres and every other edge will act on)
// in the same transaction: either both happen or neither does. Once it
// commits, the WAL is checkpointed (checkpointErased).
func (o *Outbox) EraseAndRecord(ctx context.Context, emailHMAC []byte, rec Record) (int64, error) {
	var n, seq int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		if n, err = erase(ctx, tx, emailHMAC, rec.ReceivedAt); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, insertSQL, rec.ID, o.opts.NodeID, string(rec.Kind), rec.ReceivedAt.UnixMilli(),
			nil, string(rec.Payload), nullBytes(rec.EmailHMAC), nullBytes(rec.IPHMAC))
		if err != nil {
			return fmt.Errorf("record erasure request: %w", err)
		}
		if seq, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("read erasure request seq: %w", err)
		}
		tx.AddPending(1)
		return nil
	})
	if err == nil && seq > o.lastSeq.Load() {
		o.lastSeq.Store(seq)
	}
	// On an error the job may still run later in the writer (the caller's
	// context ended first): its results are not ours to read.
	if err != nil {
		return 0, err
	}
	if n > 0 {
		o.checkpointErased(ctx)
	}
	return n, nil
}

// SetErasureCheckpoint makes f, not the outbox, checkpoint the WAL after
// an erasure. A node that replicates sets it: Litestream holds a read
// transaction so that no frame is checkpointed before it has shipped it,
// which would keep the outbox's own TRUNCATE waiting in vain; f asks
// Litestream to ship what is committed and then checkpoint (TRUNCATE)
// itself. nil restores the outbox's own checkpoint.
func (o *Outbox) SetErasureCheckpoint(f func(ctx context.Context) error) {
	if f == nil {
		o.erasureCheckpoint.Store(nil)
		return
	}
	o.erasureCheckpoint.Store(&f)
}

// walScrubWait bounds how long an erasure waits for its checkpoint: the
// checkpoint needs a moment without a writer and without readers on an
// older snapshot.
const walScrubWait = 5 * time.Second

// checkpointErased copies the WAL into the database file and truncates it
// to nothing, after an erasure committed. secure_delete zeroes erased
// bytes in the database's pages, not in the WAL, where the frames that
// wrote the rows keep the address until traffic happens to overwrite them
// (the WAL restarts from its beginning only once fully checkpointed). After
// a TRUNCATE checkpoint the file holds no frame at all; the scrubbed pages
// are in outbox.db. A checkpoint that cannot finish (a reader holds an old
// snapshot past walScrubWait) is owed: it is logged, reported by
// WALScrubOwed, and tried again after the next erasure.
func (o *Outbox) checkpointErased(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), walScrubWait)
	defer cancel()
	var err error
	if f := o.erasureCheckpoint.Load(); f != nil {
		err = (*f)(ctx)
	} else {
		err = o.truncateWAL(ctx)
	}
	if err != nil {
		o.walScrubOwed.Store(true)
		o.log.Warn("outbox WAL still holds erased rows; the next erasure checkpoints again", logging.KeyErr, err)
		return
	}
	o.walScrubOwed.Store(false)
}

// WALScrubOwed reports whether the WAL may still hold rows an erasure
// scrubbed, because the checkpoint after it did not finish.
func (o *Outbox) WALScrubOwed() bool { return o.walScrubOwed.Load() }

func (o *Outbox) truncateWAL(ctx context.Context) error {
	db, err := sql.Open("sqlite", "file:"+o.path+"?_pragma=busy_timeout(1000)&_pragma=synchronous(FULL)")
	if err != nil {
		return fmt.Errorf("open checkpoint connection: %w", err)
	}
	defer db.Close()
	for wait := 10 * time.Millisecond; ; wait = min(wait*2, 500*time.Millisecond) {
		var busy, frames, copied int
		err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied)
		if err == nil && busy == 0 {
			return nil
		}
		if err == nil {
			err = errors.New("checkpoint busy: a reader or writer held the WAL")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("truncate WAL after erasure: %w", err)
		case <-t.C:
		}
	}
}

// Export returns every row this outbox holds for the address, for an
// access request (PIPEDA).
func (o *Outbox) Export(ctx context.Context, emailHMAC []byte) ([]Row, error) {
	rows, err := o.read.QueryContext(ctx, `
		SELECT seq, id, node_id, kind, received_at, COALESCE(idem_key, ''), payload, email_hmac, ip_hmac
		FROM outbox WHERE email_hmac = ? ORDER BY seq`, emailHMAC)
	if err != nil {
		return nil, fmt.Errorf("query rows of address: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
