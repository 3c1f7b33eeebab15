package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailslot/mailslot"
)

// Tombstone is an erasure as edges learn it from Postgres.
type Tombstone struct {
	ID        int64
	EmailHMAC []byte
	ErasedAt  time.Time
}

// Erase scrubs every row of the address captured up to upTo: sign-ups and
// consent changes lose their payload and hashes, events that name one of
// those sign-ups lose the link, and their idempotency keys are forgotten.
// Erasure requests themselves are kept: they carry only the hash, and
// Postgres needs them.
func (o *Outbox) Erase(ctx context.Context, emailHMAC []byte, upTo time.Time) (int64, error) {
	var n int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		n, err = erase(ctx, tx, emailHMAC, upTo)
		return err
	})
	return n, err
}

// ApplyTombstones erases each tombstone's rows and advances the pull cursor
// in the same transaction, so that a crash never skips one.
func (o *Outbox) ApplyTombstones(ctx context.Context, ts []Tombstone) (int64, error) {
	var total int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var cursor int64
		for _, t := range ts {
			n, err := erase(ctx, tx, t.EmailHMAC, t.ErasedAt)
			if err != nil {
				return err
			}
			total += n
			cursor = max(cursor, t.ID)
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO meta (name, value) VALUES ('tombstone_cursor', ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value
			WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)`, cursor)
		if err != nil {
			return fmt.Errorf("advance tombstone cursor: %w", err)
		}
		return nil
	})
	return total, err
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

func erase(ctx context.Context, tx *Tx, emailHMAC []byte, upTo time.Time) (int64, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT seq, id, synced_at IS NULL AND quarantined_at IS NULL FROM outbox
		WHERE email_hmac = ? AND received_at <= ? AND kind IN ('lead', 'consent')`,
		emailHMAC, upTo.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("find rows to erase: %w", err)
	}
	var seqs []int64
	var ids []string
	for rows.Next() {
		var seq int64
		var id string
		var pending bool
		if err := rows.Scan(&seq, &id, &pending); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read rows to erase: %w", err)
		}
		seqs = append(seqs, seq)
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read rows to erase: %w", err)
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	n, err := updateSeqs(ctx, tx.Tx, `UPDATE outbox SET payload = '`+mailslot.ErasedPayload+`', email_hmac = NULL, ip_hmac = NULL,
		idem_key = NULL, quarantine_reason = NULL WHERE seq IN `, nil, seqs)
	if err != nil {
		return 0, fmt.Errorf("erase rows: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE first_seq IN (`+placeholders(len(seqs))+`)`, anys(seqs)...); err != nil {
		return 0, fmt.Errorf("forget idempotency keys of erased rows: %w", err)
	}
	// Events that name an erased sign-up keep the event, not the link.
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE outbox SET payload = json_remove(payload, '$.submission_id'), ip_hmac = NULL
			WHERE kind = 'event' AND json_extract(payload, '$.submission_id') IN (`+placeholders(len(chunk))+`)`, args...); err != nil {
			return 0, fmt.Errorf("unlink events from erased rows: %w", err)
		}
	}
	return n, nil
}

func placeholders(n int) string {
	return "?" + strings.Repeat(",?", n-1)
}

func anys(seqs []int64) []any {
	out := make([]any, len(seqs))
	for i, s := range seqs {
		out[i] = s
	}
	return out
}

// EraseAndRecord scrubs the address's rows up to rec.ReceivedAt and stores
// rec (the erasure request that Postgres and every other edge will act on)
// in the same transaction: either both happen or neither does.
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
	return n, err
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
