package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailslot/mailslot"
)

// Row is a stored outbox row as the sync worker reads it.
type Row struct {
	Seq        int64
	ID         string
	NodeID     string
	Kind       mailslot.Kind
	ReceivedAt time.Time
	IdemKey    string
	Payload    []byte
	EmailHMAC  []byte
	IPHMAC     []byte
}

// Pending returns up to limit rows after seq that are neither synced nor
// quarantined, in seq order.
func (o *Outbox) Pending(ctx context.Context, afterSeq int64, limit int) ([]Row, error) {
	rows, err := o.read.QueryContext(ctx, `
		SELECT seq, id, node_id, kind, received_at, COALESCE(idem_key, ''), payload, email_hmac, ip_hmac
		FROM outbox
		WHERE synced_at IS NULL AND quarantined_at IS NULL AND seq > ?
		ORDER BY seq
		LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("query pending rows: %w", err)
	}
	defer rows.Close()
	out := make([]Row, 0, limit)
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending rows: %w", err)
	}
	return out, nil
}

// scanRow reads the columns selected as seq, id, node_id, kind,
// received_at, idem_key, payload, email_hmac, ip_hmac.
func scanRow(rows *sql.Rows) (Row, error) {
	var r Row
	var kind string
	var ms int64
	if err := rows.Scan(&r.Seq, &r.ID, &r.NodeID, &kind, &ms, &r.IdemKey, &r.Payload, &r.EmailHMAC, &r.IPHMAC); err != nil {
		return r, fmt.Errorf("scan outbox row: %w", err)
	}
	r.Kind = mailslot.Kind(kind)
	r.ReceivedAt = time.UnixMilli(ms).UTC()
	return r, nil
}

// MarkSynced records that Postgres committed the rows with these seqs.
func (o *Outbox) MarkSynced(ctx context.Context, seqs []int64, at time.Time) error {
	if len(seqs) == 0 {
		return nil
	}
	return o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		n, err := updateSeqs(ctx, tx.Tx, `UPDATE outbox SET synced_at = ? WHERE synced_at IS NULL AND quarantined_at IS NULL AND seq IN `, []any{at.UnixMilli()}, seqs)
		if err != nil {
			return fmt.Errorf("mark %d rows synced: %w", len(seqs), err)
		}
		tx.AddPending(-n)
		tx.AddSynced(n)
		return nil
	})
}

// Quarantine sets a row aside with the reason Postgres refused it, so that
// it stops blocking the rows behind it and an operator can look at it.
func (o *Outbox) Quarantine(ctx context.Context, seq int64, reason string) error {
	return o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE outbox SET quarantined_at = ?, quarantine_reason = ?
			WHERE seq = ? AND synced_at IS NULL AND quarantined_at IS NULL`,
			time.Now().UnixMilli(), reason, seq)
		if err != nil {
			return fmt.Errorf("quarantine row %d: %w", seq, err)
		}
		n, _ := res.RowsAffected()
		tx.AddPending(-n)
		tx.AddQuarantined(n)
		return nil
	})
}

// Prune deletes rows synced before cutoff, and idempotency keys older than
// it, and returns how many rows went.
func (o *Outbox) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE synced_at IS NOT NULL AND synced_at < ?`, cutoff.UnixMilli())
		if err != nil {
			return fmt.Errorf("prune synced rows: %w", err)
		}
		n, _ = res.RowsAffected()
		tx.AddSynced(-n)
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, cutoff.UnixMilli()); err != nil {
			return fmt.Errorf("prune idempotency keys: %w", err)
		}
		return nil
	})
	return n, err
}

// updateSeqs runs prefix + "(?,?,…)" over seqs in chunks, with lead as the
// statement's leading arguments.
func updateSeqs(ctx context.Context, tx *sql.Tx, prefix string, lead []any, seqs []int64) (int64, error) {
	var total int64
	// SQLite allows 32766 bound parameters; stay well below.
	for len(seqs) > 0 {
		chunk := seqs[:min(len(seqs), 1000)]
		seqs = seqs[len(chunk):]
		args := make([]any, 0, len(chunk)+len(lead))
		args = append(args, lead...)
		for _, s := range chunk {
			args = append(args, s)
		}
		q := prefix + "(?" + strings.Repeat(",?", len(chunk)-1) + ")"
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// Stats is the outbox's state for status pages and metrics.
type Stats struct {
	NodeID          string     `json:"node_id"`
	Pending         int64      `json:"pending"`
	OldestPendingAt *time.Time `json:"oldest_pending_at,omitempty"`
	Synced          int64      `json:"synced_retained"`
	Quarantined     int64      `json:"quarantined"`
	LastSeq         int64      `json:"last_seq"`
	FileBytes       int64      `json:"file_bytes"`
}

// Stats says what the outbox holds. The counts come from counters the
// writer keeps, so status pages and metrics scrapes cost the same whether
// the outbox holds a hundred rows or millions; only the oldest pending row
// is looked up, through the pending index.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	st := Stats{NodeID: o.opts.NodeID, LastSeq: o.lastSeq.Load(), FileBytes: o.fileBytes(),
		Pending: o.pending.Load(), Synced: o.synced.Load(), Quarantined: o.quarantined.Load()}
	var oldest sql.NullInt64
	err := o.read.QueryRowContext(ctx, `
		SELECT received_at FROM outbox WHERE synced_at IS NULL AND quarantined_at IS NULL ORDER BY seq LIMIT 1`).
		Scan(&oldest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("find the oldest pending row: %w", err)
	}
	if oldest.Valid {
		t := time.UnixMilli(oldest.Int64).UTC()
		st.OldestPendingAt = &t
	}
	return st, nil
}

// PendingCount is the number of rows waiting for sync, without a query.
func (o *Outbox) PendingCount() int64 { return o.pending.Load() }

// LastSeq is the highest sequence number ever assigned.
func (o *Outbox) LastSeq() int64 { return o.lastSeq.Load() }
