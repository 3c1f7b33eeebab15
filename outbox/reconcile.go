package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Row states as reconciliation sees them.
const (
	StatePending     = "pending"
	StateSynced      = "synced"
	StateQuarantined = "quarantined"
)

// Held is one row the outbox holds, without its content: what an operator
// compares with the Postgres ledger. No personal data crosses with it.
type Held struct {
	Seq   int64  `json:"seq"`
	ID    string `json:"id"`
	State string `json:"state"`
}

// HeldRange returns up to limit rows with from <= seq <= to, in seq order.
func (o *Outbox) HeldRange(ctx context.Context, from, to int64, limit int) ([]Held, error) {
	rows, err := o.read.QueryContext(ctx, `
		SELECT seq, id, CASE WHEN quarantined_at IS NOT NULL THEN 'quarantined'
		                     WHEN synced_at IS NOT NULL THEN 'synced' ELSE 'pending' END
		FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("query held rows: %w", err)
	}
	defer rows.Close()
	out := make([]Held, 0, min(limit, 1024))
	for rows.Next() {
		var h Held
		if err := rows.Scan(&h.Seq, &h.ID, &h.State); err != nil {
			return nil, fmt.Errorf("scan held row: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read held rows: %w", err)
	}
	return out, nil
}

// SeqRange is a run of consecutive sequence numbers.
type SeqRange struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// SeqJump is a deliberate step in the sequence: after a restore the next
// seq starts past everything Postgres may hold for this node, and the seqs
// skipped were never assigned here.
type SeqJump struct {
	From   int64     `json:"from"` // the high-water mark before the jump
	To     int64     `json:"to"`   // the next seq is To+1
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Summary is what the outbox holds, for reconciliation.
type Summary struct {
	NodeID         string `json:"node_id"`
	Pending        int64  `json:"pending"`
	SyncedRetained int64  `json:"synced_retained"`
	Quarantined    int64  `json:"quarantined"`
	// MinSeq and MaxSeq bound the rows held (0 when there are none);
	// LastSeq is the highest seq ever assigned, held or pruned.
	MinSeq  int64 `json:"min_retained_seq"`
	MaxSeq  int64 `json:"max_held_seq"`
	LastSeq int64 `json:"last_seq"`
	// Ranges are the runs of consecutive seqs held, the first MaxRanges
	// of them; RangesTruncated says there are more.
	Ranges          []SeqRange `json:"ranges"`
	RangesTruncated bool       `json:"ranges_truncated,omitempty"`
	Jumps           []SeqJump  `json:"seq_jumps,omitempty"`
}

// MaxRanges bounds Summary.Ranges.
const MaxRanges = 100

// Summary counts the rows by state and finds the runs of seqs held.
func (o *Outbox) Summary(ctx context.Context) (Summary, error) {
	s := Summary{NodeID: o.opts.NodeID, Ranges: []SeqRange{}}
	err := o.read.QueryRowContext(ctx, `
		SELECT count(*) FILTER (WHERE synced_at IS NULL AND quarantined_at IS NULL),
		       count(*) FILTER (WHERE synced_at IS NOT NULL AND quarantined_at IS NULL),
		       count(*) FILTER (WHERE quarantined_at IS NOT NULL),
		       COALESCE(min(seq), 0), COALESCE(max(seq), 0),
		       COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)
		FROM outbox`).Scan(&s.Pending, &s.SyncedRetained, &s.Quarantined, &s.MinSeq, &s.MaxSeq, &s.LastSeq)
	if err != nil {
		return s, fmt.Errorf("summarize outbox: %w", err)
	}
	s.LastSeq = max(s.LastSeq, s.MaxSeq)
	// Gaps and islands: within a run, seq minus its rank is constant.
	rows, err := o.read.QueryContext(ctx, `
		SELECT min(seq), max(seq) FROM (
			SELECT seq, seq - row_number() OVER (ORDER BY seq) AS run FROM outbox)
		GROUP BY run ORDER BY 1 LIMIT ?`, MaxRanges+1)
	if err != nil {
		return s, fmt.Errorf("find seq ranges: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r SeqRange
		if err := rows.Scan(&r.First, &r.Last); err != nil {
			return s, fmt.Errorf("scan seq range: %w", err)
		}
		if len(s.Ranges) == MaxRanges {
			s.RangesTruncated = true
			break
		}
		s.Ranges = append(s.Ranges, r)
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read seq ranges: %w", err)
	}
	if s.Jumps, err = o.SeqJumps(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// Requeue marks the rows with these seqs pending again, whether they were
// synced or quarantined, so that this edge's sync applies them once more.
// The ledger makes that idempotent: a row Postgres already holds is a
// replay and changes nothing. It returns how many rows changed state.
func (o *Outbox) Requeue(ctx context.Context, seqs []int64) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	var n int64
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var err error
		// Synced and quarantined rows go in two statements so that each
		// state's counter loses what it gave up.
		synced, err := updateSeqs(ctx, tx.Tx, `UPDATE outbox SET synced_at = NULL
			WHERE synced_at IS NOT NULL AND quarantined_at IS NULL AND seq IN `, nil, seqs)
		if err != nil {
			return fmt.Errorf("requeue %d rows: %w", len(seqs), err)
		}
		quarantined, err := updateSeqs(ctx, tx.Tx, `UPDATE outbox SET synced_at = NULL, quarantined_at = NULL, quarantine_reason = NULL
			WHERE quarantined_at IS NOT NULL AND seq IN `, nil, seqs)
		if err != nil {
			return fmt.Errorf("requeue %d rows: %w", len(seqs), err)
		}
		n = synced + quarantined
		tx.AddPending(n)
		tx.AddSynced(-synced)
		tx.AddQuarantined(-quarantined)
		return nil
	})
	if err == nil && n > 0 {
		o.rewinds.Add(1)
	}
	return n, err
}

// Rewinds counts the times rows behind newer ones became pending again
// (Requeue). A reader that keeps a cursor past the rows it has taken reads
// from the start again when this changes.
func (o *Outbox) Rewinds() int64 { return o.rewinds.Load() }

// RaiseSeq makes the next sequence number greater than floor, if it is not
// already, and records the jump. AUTOINCREMENT takes the next seq from the
// larger of sqlite_sequence and the largest seq present, so raising
// sqlite_sequence is enough. It reports whether anything changed.
func (o *Outbox) RaiseSeq(ctx context.Context, floor int64, reason string) (bool, error) {
	var raised bool
	err := o.Do(ctx, func(ctx context.Context, tx *Tx) error {
		var cur int64
		err := tx.QueryRowContext(ctx, `
			SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
			           COALESCE((SELECT max(seq) FROM outbox), 0))`).Scan(&cur)
		if err != nil {
			return fmt.Errorf("read seq high-water mark: %w", err)
		}
		if floor <= cur {
			return nil
		}
		res, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'`, floor)
		if err != nil {
			return fmt.Errorf("raise seq: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)`, floor); err != nil {
				return fmt.Errorf("raise seq: %w", err)
			}
		}
		j, _ := json.Marshal(SeqJump{From: cur, To: floor, At: time.Now().UTC(), Reason: reason})
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)`,
			"seq_jump:"+strconv.FormatInt(floor, 10), string(j)); err != nil {
			return fmt.Errorf("record seq jump: %w", err)
		}
		raised = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if raised {
		for {
			cur := o.lastSeq.Load()
			if cur >= floor || o.lastSeq.CompareAndSwap(cur, floor) {
				break
			}
		}
	}
	return raised, nil
}

// SeqJumps lists the jumps RaiseSeq recorded, oldest first.
func (o *Outbox) SeqJumps(ctx context.Context) ([]SeqJump, error) {
	rows, err := o.read.QueryContext(ctx, `SELECT value FROM meta WHERE name LIKE 'seq_jump:%' ORDER BY CAST(substr(name, 10) AS INTEGER)`)
	if err != nil {
		return nil, fmt.Errorf("read seq jumps: %w", err)
	}
	defer rows.Close()
	var out []SeqJump
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("scan seq jump: %w", err)
		}
		var j SeqJump
		if err := json.Unmarshal([]byte(v), &j); err != nil {
			return nil, fmt.Errorf("decode seq jump: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read seq jumps: %w", err)
	}
	return out, nil
}
