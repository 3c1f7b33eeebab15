package main

import (
	"context"
	"fmt"
	"os/user"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/report"
	"github.com/mailslot/mailslot/sync/drain"
)

// purgeEvents deletes the telemetry received before cutoff. The months
// wholly before cutoff's month go as whole partitions
// (report.PurgeEventPartitions: no row-by-row delete, nothing to vacuum);
// only the rows of cutoff's own month that are older than cutoff are
// deleted one by one, so the retention period is honoured to the second,
// not rounded to a month. It is one transaction and one record in
// mailslot.purges, with the exact cutoff and every row gone.
func purgeEvents(ctx context.Context, e env, conn *pgx.Conn, cutoff time.Time, dryRun bool) error {
	by := "mailslotctl"
	if u, err := user.Current(); err == nil {
		by += ":" + u.Username
	}
	var res report.PurgeResult
	var rest int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var err error
		if res, err = report.PurgeEventPartitions(ctx, tx, cutoff, by, dryRun); err != nil {
			return err
		}
		if dryRun {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM mailslot.events WHERE received_at >= $1 AND received_at < $2`, res.Before, cutoff).Scan(&rest); err != nil {
				return fmt.Errorf("count old events: %w", err)
			}
			return nil
		}
		ct, err := tx.Exec(ctx, `DELETE FROM mailslot.events WHERE received_at >= $1 AND received_at < $2`, res.Before, cutoff)
		if err != nil {
			return fmt.Errorf("purge the rest of the cutoff's month: %w", err)
		}
		rest = ct.RowsAffected()
		// The partition purge recorded its month boundary; the record is
		// of this whole purge: the exact cutoff, every row.
		if _, err := tx.Exec(ctx, `
			UPDATE mailslot.purges SET cutoff = $1, rows = rows + $2
			WHERE id = (SELECT max(id) FROM mailslot.purges WHERE what = 'events' AND purged_by = $3)`, cutoff, rest, by); err != nil {
			return fmt.Errorf("log purge: %w", err)
		}
		return nil
	})
	if err != nil {
		return reportErr(err)
	}
	total := res.Rows + rest
	if dryRun {
		fmt.Fprintf(e.stdout, "would purge %d event(s) received before %s (%d whole monthly partition(s))\n", total, cutoff.Format(time.RFC3339), res.Partitions)
		return nil
	}
	fmt.Fprintf(e.stdout, "purged %d event(s) received before %s: %d whole monthly partition(s) dropped, %d row(s) of %s deleted (logged in mailslot.purges)\n",
		total, cutoff.Format(time.RFC3339), res.Partitions, rest, cutoff.Format("2006-01"))
	return nil
}

// ensurePartitionsAhead creates the mailslot.events partitions of this
// month and the drain.EventMonthsAhead after it that do not exist yet, as
// the sync does at every schema check, and says so when it made any.
func ensurePartitionsAhead(ctx context.Context, e env, conn *pgx.Conn) error {
	n, err := report.EnsureEventPartitions(ctx, conn, time.Now().UTC(), drain.EventMonthsAhead+1)
	if err != nil {
		return err
	}
	if n > 0 {
		fmt.Fprintf(e.stdout, "created %d monthly event partition(s) ahead\n", n)
	}
	return nil
}
