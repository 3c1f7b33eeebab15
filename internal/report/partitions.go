package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnsureEventPartitions creates the monthly partitions of mailslot.events
// for months months from the month of from (UTC) that do not exist yet,
// and returns how many it created. It is idempotent and safe to run from
// several places at once. Rows that waited in the default partition move
// into their new month. The edge role may call it (it runs as the schema
// owner), so the sync can keep next month ready; `mailslotctl migrate`
// should call it too.
func EnsureEventPartitions(ctx context.Context, db DB, from time.Time, months int) (int, error) {
	if months < 1 || months > 1200 {
		return 0, fmt.Errorf("%w: months %d: want 1 to 1200", ErrInvalid, months)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT mailslot.ensure_event_partitions($1::date, $2)`, utcDate(from), months).Scan(&n); err != nil {
		return 0, fmt.Errorf("ensure event partitions: %w", err)
	}
	return n, nil
}

// Partition is one partition of mailslot.events.
type Partition struct {
	Name string `json:"name"`
	// From and To bound received_at, [From, To); both zero for the
	// default partition.
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Default bool      `json:"default"`
	// Rows is the planner's estimate (pg_class.reltuples), -1 before the
	// partition was first analyzed.
	Rows int64 `json:"rows_estimate"`
}

// EventPartitions lists the partitions of mailslot.events, oldest first,
// the default partition last.
func EventPartitions(ctx context.Context, db DB) ([]Partition, error) {
	rows, err := db.Query(ctx, `
		SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
		       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz,
		       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz,
		       c.reltuples::bigint
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'mailslot.events'::regclass
		ORDER BY 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("list event partitions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Partition, error) {
		var p Partition
		var from, to *time.Time
		err := r.Scan(&p.Name, &p.Default, &from, &to, &p.Rows)
		if from != nil {
			p.From = from.UTC()
		}
		if to != nil {
			p.To = to.UTC()
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list event partitions: %w", err)
	}
	return out, nil
}

// PurgeResult says what a partition purge dropped (or, in a dry run,
// would drop).
type PurgeResult struct {
	Partitions int   `json:"partitions"`
	Rows       int64 `json:"rows"`
	// Before is the boundary honoured: the start (UTC) of the cutoff's
	// month. Every event received before it is gone; later ones stay.
	Before time.Time `json:"before"`
	DryRun bool      `json:"dry_run"`
}

// PurgeEventPartitions drops the monthly partitions of mailslot.events
// that lie wholly before cutoff, and the default partition's rows from
// before the same boundary, then records the purge in mailslot.purges
// (what 'events', the boundary as cutoff, the rows, purgedBy), as
// `mailslotctl purge-events` records its row-by-row purge. A partition
// is dropped, not emptied, so the purge leaves no dead rows to vacuum.
// With dryRun it counts and changes nothing. The report rollups keep their
// counts: they hold no personal data.
func PurgeEventPartitions(ctx context.Context, db DB, cutoff time.Time, purgedBy string, dryRun bool) (PurgeResult, error) {
	if cutoff.IsZero() {
		return PurgeResult{}, fmt.Errorf("%w: purge needs a cutoff", ErrInvalid)
	}
	if strings.TrimSpace(purgedBy) == "" {
		return PurgeResult{}, fmt.Errorf("%w: purge needs who purges", ErrInvalid)
	}
	res := PurgeResult{DryRun: dryRun}
	err := db.QueryRow(ctx, `SELECT purged_partitions, purged_rows, purged_before FROM mailslot.purge_event_partitions($1, $2, $3)`,
		cutoff, purgedBy, dryRun).Scan(&res.Partitions, &res.Rows, &res.Before)
	if err != nil {
		return PurgeResult{}, fmt.Errorf("purge event partitions: %w", err)
	}
	res.Before = res.Before.UTC()
	return res, nil
}
