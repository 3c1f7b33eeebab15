package drain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The ledger's reads: what Postgres holds for a node, by (node_id, seq).
// The node asks them when a new outbox file must continue its sequence,
// mailslotctl when it reconciles an edge or recovers a lost one; the
// writes are Applier's.

// Querier is what the ledger's reads need: a *pgx.Conn, a *pgxpool.Pool or
// a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// HighWater is the highest seq Postgres holds for nodeID: in its row in
// mailslot.nodes or in the ledger. A database without the schema holds
// nothing.
func HighWater(ctx context.Context, q Querier, nodeID string) (int64, error) {
	var hw int64
	err := q.QueryRow(ctx, `
		SELECT GREATEST(COALESCE((SELECT last_seq FROM mailslot.nodes WHERE node_id = $1), 0),
		                COALESCE((SELECT max(seq) FROM mailslot.ledger WHERE node_id = $1), 0))`, nodeID).Scan(&hw)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read this node's high-water mark: %w", err)
	}
	return hw, nil
}

// Node is what Postgres knows about one node.
type Node struct {
	NodeID     string
	Region     string
	LastSeq    int64
	RowsSynced int64
	LastSyncAt *time.Time
}

// Nodes lists every node Postgres knows, by region and id. The ids are
// data: check them (internal/nodeid) before they go into a URL or a path.
func Nodes(ctx context.Context, q Querier) ([]Node, error) {
	rows, err := q.Query(ctx, `
		SELECT node_id, region, last_seq, rows_synced, last_sync_at
		FROM mailslot.nodes ORDER BY region, node_id`)
	if err != nil {
		return nil, fmt.Errorf("read nodes from Postgres (has `mailslotctl migrate` run?): %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) {
		var n Node
		err := r.Scan(&n.NodeID, &n.Region, &n.LastSeq, &n.RowsSynced, &n.LastSyncAt)
		return n, err
	})
}

// NodeRegion is the region Postgres records for nodeID, "" when it has
// none.
func NodeRegion(ctx context.Context, q Querier, nodeID string) (string, error) {
	var region string
	err := q.QueryRow(ctx, `SELECT region FROM mailslot.nodes WHERE node_id = $1`, nodeID).Scan(&region)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("read the node's region: %w", err)
	}
	return region, nil
}

// LedgerMaxSeq is the highest seq the ledger holds for nodeID, 0 for none.
func LedgerMaxSeq(ctx context.Context, q Querier, nodeID string) (int64, error) {
	var seq int64
	if err := q.QueryRow(ctx, `SELECT COALESCE(max(seq), 0) FROM mailslot.ledger WHERE node_id = $1`, nodeID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read the ledger: %w", err)
	}
	return seq, nil
}

// LedgerKey is one ledger entry of a node: its seq and the submission it
// holds.
type LedgerKey struct {
	Seq          int64
	SubmissionID string
}

// LedgerRange lists the ledger's keys for nodeID in [from, to], in seq
// order.
func LedgerRange(ctx context.Context, q Querier, nodeID string, from, to int64) ([]LedgerKey, error) {
	return ledgerKeys(ctx, q, `
		SELECT seq, submission_id::text FROM mailslot.ledger
		WHERE node_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`, nodeID, from, to)
}

// LedgerIDs maps each of seqs the ledger holds for nodeID to its
// submission id.
func LedgerIDs(ctx context.Context, q Querier, nodeID string, seqs []int64) (map[int64]string, error) {
	keys, err := ledgerKeys(ctx, q, `SELECT seq, submission_id::text FROM mailslot.ledger WHERE node_id = $1 AND seq = ANY($2)`, nodeID, seqs)
	if err != nil {
		return nil, err
	}
	ids := make(map[int64]string, len(keys))
	for _, k := range keys {
		ids[k.Seq] = k.SubmissionID
	}
	return ids, nil
}

func ledgerKeys(ctx context.Context, q Querier, sql string, args ...any) ([]LedgerKey, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LedgerKey, error) {
		var k LedgerKey
		err := r.Scan(&k.Seq, &k.SubmissionID)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	return keys, nil
}

// CountInLedger counts the seqs of nodeID the ledger holds; with
// erasedOnly, those recorded as erased (applied without their content).
func CountInLedger(ctx context.Context, q Querier, nodeID string, seqs []int64, erasedOnly bool) (int64, error) {
	sql := `SELECT count(*) FROM mailslot.ledger WHERE node_id = $1 AND seq = ANY($2)`
	if erasedOnly {
		sql += ` AND outcome = 'erased'`
	}
	var n int64
	if err := q.QueryRow(ctx, sql, nodeID, seqs).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the ledger: %w", err)
	}
	return n, nil
}

// Duplicate is a submission id the ledger holds under more than one key.
type Duplicate struct {
	SubmissionID string   `json:"submission_id"`
	Keys         []string `json:"keys"` // node_id:seq
}

// Duplicates lists up to limit submission ids the ledger holds under more
// than one key. Two rows with one key are impossible (the primary key is
// (node_id, seq)); one submission under two keys would mean it was
// captured or replayed twice.
func Duplicates(ctx context.Context, q Querier, limit int) ([]Duplicate, error) {
	rows, err := q.Query(ctx, `
		SELECT submission_id::text, array_agg(node_id || ':' || seq ORDER BY node_id, seq)
		FROM mailslot.ledger GROUP BY submission_id HAVING count(*) > 1
		ORDER BY submission_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("look for duplicated submissions in the ledger: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Duplicate, error) {
		var d Duplicate
		err := row.Scan(&d.SubmissionID, &d.Keys)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("look for duplicated submissions in the ledger: %w", err)
	}
	if out == nil {
		out = []Duplicate{}
	}
	return out, nil
}
