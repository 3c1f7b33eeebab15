package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/edge/replica"
	"github.com/mailslot/mailslot/internal/nodeid"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/drain"
)

// recoverReport is what `mailslotctl recover` did, with exact counts. Every
// restored row is in exactly one of AlreadyInPostgres, Conflicts, Applied,
// AppliedConcurrently, Quarantined and LeftPending.
type recoverReport struct {
	NodeID              string           `json:"node_id"`
	Replica             string           `json:"replica"`
	ReplicaTXID         uint64           `json:"replica_txid"`
	Restored            int64            `json:"restored_rows"`
	RestoredFirstSeq    int64            `json:"restored_first_seq"`
	RestoredLastSeq     int64            `json:"restored_last_seq"`
	AlreadyInPostgres   int64            `json:"already_in_postgres"`
	Applied             int64            `json:"applied"`
	AppliedAsErased     int64            `json:"applied_as_erased"`
	AppliedConcurrently int64            `json:"applied_concurrently"`
	Quarantined         int64            `json:"quarantined"`
	Conflicts           int64            `json:"conflicts"`
	LeftPending         int64            `json:"left_pending"`
	QuarantinedRows     []quarantinedRow `json:"quarantined_rows,omitempty"`
	ConflictSeqs        []int64          `json:"conflict_seqs,omitempty"`
	DurationSeconds     float64          `json:"duration_seconds"`
	KeptAt              string           `json:"kept_at,omitempty"`
}

type quarantinedRow struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

type recoverFlags struct {
	node, region, keep string
	timeout, stall     time.Duration
}

func runRecover(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "recover", "recover --node ID [--json] [--replica-url URL] [--database-url URL] [--keep DIR]")
	var rf recoverFlags
	fs.StringVar(&rf.node, "node", "", "the lost node's id (mailslotctl status lists them)")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	replicaFlag := fs.String("replica-url", "", "the fleet's replica base (default $MAILSLOT_REPLICA_URL; S3 endpoint from $MAILSLOT_REPLICA_ENDPOINT, credentials from AWS_*)")
	fs.StringVar(&rf.region, "region", "", "region to record for the node if Postgres has none")
	fs.StringVar(&rf.keep, "keep", "", "restore into this directory and keep the file (default: a temporary directory, removed)")
	fs.DurationVar(&rf.timeout, "timeout", time.Hour, "give up after this long")
	fs.DurationVar(&rf.stall, "stall", 2*time.Minute, "give up when sync makes no progress for this long")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rf.node == "" {
		fs.Usage()
		return fmt.Errorf("%w: --node is required", errUsage)
	}
	if err := nodeid.Check(rf.node); err != nil {
		return fmt.Errorf("%w: --node: %w", errUsage, err)
	}
	dbURL, err := databaseURL(e, *dbFlag)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	base := *replicaFlag
	if base == "" {
		base = cfg.ReplicaURL
	}
	if base == "" {
		return fmt.Errorf("%w: no replica: pass --replica-url or set MAILSLOT_REPLICA_URL to the fleet's replica base, as the edges have it", errUsage)
	}
	if base, err = replica.WithEndpoint(base, cfg.ReplicaEndpoint, cfg.ReplicaRegion); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, rf.timeout)
	defer cancel()
	conn, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if v, err := pgschema.Version(ctx, conn); err != nil {
		return err
	} else if need := pgschema.Required(); v < need {
		return fmt.Errorf("the Postgres schema is at version %d, recover needs %d: run mailslotctl migrate first", v, need)
	}
	rep, err := recoverNode(ctx, e, conn, dbURL, base, rf)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printRecover(e.stdout, rep); err != nil {
		return err
	}
	if n := rep.Quarantined + rep.Conflicts + rep.LeftPending; n > 0 {
		return exitError{code: exitMissing, msg: fmt.Sprintf("%d restored row(s) are not in Postgres (quarantined, conflicting or still pending): see above", n)}
	}
	return nil
}

func recoverNode(ctx context.Context, e env, conn *pgx.Conn, dbURL, base string, rf recoverFlags) (*recoverReport, error) {
	start := time.Now()
	dir, cleanup, err := restoreDir(rf.keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	nodeURL, err := replica.NodeURL(base, rf.node)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	fmt.Fprintf(e.stderr, "recover: restoring node %s from %s\n", rf.node, replica.Display(nodeURL))
	res, err := replica.Restore(ctx, base, rf.node, filepath.Join(dir, outbox.FileName))
	if errors.Is(err, replica.ErrNotFound) {
		return nil, fmt.Errorf("no replica for node %q under %s: check --node (mailslotctl status lists node ids) and MAILSLOT_REPLICA_URL",
			rf.node, replica.Display(base))
	}
	if err != nil {
		return nil, fmt.Errorf("%w (check MAILSLOT_REPLICA_URL, MAILSLOT_REPLICA_ENDPOINT and the AWS_* credentials)", err)
	}
	// The restored file is a private scratch copy: nothing replicates it,
	// and it is deleted at the end unless --keep named a directory. The
	// outbox API gives it the same single writer and counters as an edge.
	out, err := outbox.Open(ctx, outbox.Options{Dir: dir, NodeID: rf.node, GroupCommit: true})
	if err != nil {
		return nil, fmt.Errorf("open the restored outbox: %w", err)
	}
	defer out.Close()
	rep := &recoverReport{NodeID: rf.node, Replica: res.Replica, ReplicaTXID: res.TXID}
	if rf.keep != "" {
		rep.KeptAt = out.Path()
	}
	attempted, err := triage(ctx, conn, out, rep)
	if err != nil {
		return nil, err
	}
	region, err := drain.NodeRegion(ctx, conn, rf.node)
	if err != nil {
		return nil, err
	}
	if region == "" {
		region = rf.region
	}
	if region == "" {
		region = "unknown"
	}
	fmt.Fprintf(e.stderr, "recover: restored %d rows (replica txid %d); %d already in Postgres, syncing %d\n",
		rep.Restored, rep.ReplicaTXID, rep.AlreadyInPostgres, len(attempted))
	ws, err := syncRestored(ctx, e, out, dbURL, rf, region, int64(len(attempted)))
	if err != nil {
		return nil, err
	}
	rep.Applied, rep.AppliedConcurrently = ws.RowsSynced, ws.RowsReplayed
	if err := tally(ctx, conn, out, rep, attempted); err != nil {
		return nil, err
	}
	rep.DurationSeconds = time.Since(start).Seconds()
	return rep, nil
}

// restoreDir is where the replica is restored: the --keep directory (which
// must not hold an outbox already) or a new temporary one.
func restoreDir(keep string) (string, func(), error) {
	if keep == "" {
		dir, err := os.MkdirTemp("", "mailslot-recover-")
		if err != nil {
			return "", nil, fmt.Errorf("create a temporary directory: %w", err)
		}
		return dir, func() { _ = os.RemoveAll(dir) }, nil
	}
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return "", nil, fmt.Errorf("--keep: %w", err)
	}
	if _, err := os.Stat(filepath.Join(keep, outbox.FileName)); err == nil {
		return "", nil, fmt.Errorf("%w: --keep %s already holds an %s", errUsage, keep, outbox.FileName)
	}
	return keep, func() {}, nil
}

// triage sorts the restored rows by what the ledger says of each: rows
// Postgres holds are marked synced, rows whose key Postgres gave to another
// submission are set aside, and every other row is made pending, whatever
// its state in the replica (a row synced there may have been lost since).
// It returns the seqs left to apply.
func triage(ctx context.Context, conn *pgx.Conn, out *outbox.Outbox, rep *recoverReport) ([]int64, error) {
	var attempted, settled, requeue []int64
	for cursor := int64(0); ; {
		page, err := out.HeldRange(ctx, cursor, math.MaxInt64, 5000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		seqs := make([]int64, len(page))
		for i, h := range page {
			seqs[i] = h.Seq
		}
		ids, err := drain.LedgerIDs(ctx, conn, rep.NodeID, seqs)
		if err != nil {
			return nil, err
		}
		for _, h := range page {
			if rep.RestoredFirstSeq == 0 {
				rep.RestoredFirstSeq = h.Seq
			}
			rep.Restored++
			rep.RestoredLastSeq = h.Seq
			id, ok := ids[h.Seq]
			switch {
			case ok && id == h.ID:
				rep.AlreadyInPostgres++
				settled = append(settled, h.Seq)
			case ok:
				rep.Conflicts++
				rep.ConflictSeqs = appendCapped(rep.ConflictSeqs, h.Seq)
				settled = append(settled, h.Seq)
			default:
				attempted = append(attempted, h.Seq)
				if h.State != outbox.StatePending {
					requeue = append(requeue, h.Seq)
				}
			}
		}
		cursor = page[len(page)-1].Seq + 1
	}
	if err := out.MarkSynced(ctx, settled, time.Now()); err != nil {
		return nil, err
	}
	if _, err := out.Requeue(ctx, requeue); err != nil {
		return nil, err
	}
	return attempted, nil
}

// syncRestored runs the edge's own sync worker on the restored outbox until
// nothing is pending: the same decoding, the same Applier keyed by
// (node_id, seq), the same erasure checks, so a row Postgres already holds
// is a replay that changes nothing and a row an erasure covers is recorded
// without its content.
func syncRestored(ctx context.Context, e env, out *outbox.Outbox, dbURL string, rf recoverFlags, region string, total int64) (drain.Status, error) {
	w, err := drain.New(drain.Options{
		Outbox:      out,
		DatabaseURL: dbURL,
		NodeID:      rf.node,
		Region:      region,
		BatchSize:   1000,
		Interval:    20 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return drain.Status{}, err
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(wctx)
	}()
	defer func() {
		stop()
		<-done
	}()
	prog := newProgress(e.stderr, "recover")
	var lastDone int64 = -1
	lastMove := time.Now()
	for out.PendingCount() > 0 {
		st, err := w.Status(ctx)
		if err != nil {
			return st, err
		}
		doneN := st.RowsSynced + st.RowsReplayed + st.Quarantined
		prog.report("applied %d of %d rows (%d replayed, %d quarantined)", st.RowsSynced, total, st.RowsReplayed, st.Quarantined)
		switch {
		case st.State == drain.StateSchemaBehind:
			return st, fmt.Errorf("not syncing: %s", st.LastError)
		case doneN != lastDone:
			lastDone, lastMove = doneN, time.Now()
		case time.Since(lastMove) > rf.stall:
			return st, fmt.Errorf("sync into Postgres made no progress for %v (last error: %s); %d rows still pending: run recover again once Postgres accepts writes",
				rf.stall, orDash(st.LastError), out.PendingCount())
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("recover stopped with %d rows pending: %w", out.PendingCount(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	<-done
	return w.Status(context.WithoutCancel(ctx))
}

// tally reads what became of the rows sync attempted: recorded as erased
// in the ledger, quarantined in the restored file, or still pending.
func tally(ctx context.Context, conn *pgx.Conn, out *outbox.Outbox, rep *recoverReport, attempted []int64) error {
	for chunk := range slices.Chunk(attempted, 10_000) {
		erased, err := drain.CountInLedger(ctx, conn, rep.NodeID, chunk, true)
		if err != nil {
			return err
		}
		rep.AppliedAsErased += erased
	}
	tried := make(map[int64]bool, len(attempted))
	for _, s := range attempted {
		tried[s] = true
	}
	rows, err := out.DB().QueryContext(ctx, `SELECT seq, COALESCE(quarantine_reason, '') FROM outbox WHERE quarantined_at IS NOT NULL ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("read quarantined rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var q quarantinedRow
		if err := rows.Scan(&q.Seq, &q.Reason); err != nil {
			return fmt.Errorf("read quarantined rows: %w", err)
		}
		if tried[q.Seq] {
			rep.Quarantined++
			if len(rep.QuarantinedRows) < listCap {
				rep.QuarantinedRows = append(rep.QuarantinedRows, q)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read quarantined rows: %w", err)
	}
	rep.LeftPending = out.PendingCount()
	return nil
}

func printRecover(w io.Writer, rep *recoverReport) error {
	fmt.Fprintf(w, "recovered node %s from %s (replica txid %d) in %.1fs\n\n",
		rep.NodeID, rep.Replica, rep.ReplicaTXID, rep.DurationSeconds)
	line := func(n int64, what string) { fmt.Fprintf(w, "%10d  %s\n", n, what) }
	seqs := "none"
	if rep.Restored > 0 {
		seqs = fmt.Sprintf("seqs %d-%d", rep.RestoredFirstSeq, rep.RestoredLastSeq)
	}
	line(rep.Restored, "restored rows ("+seqs+")")
	line(rep.AlreadyInPostgres, "already in Postgres")
	line(rep.Applied, fmt.Sprintf("applied now (%d of them recorded as erased: a tombstone covers them)", rep.AppliedAsErased))
	line(rep.AppliedConcurrently, "applied meanwhile by another sync (is the node's edge still running?)")
	line(rep.Quarantined, "quarantined: Postgres refuses their content")
	line(rep.Conflicts, "conflicting: Postgres holds their key for another submission")
	line(rep.LeftPending, "still pending")
	for _, q := range rep.QuarantinedRows {
		fmt.Fprintf(w, "quarantined seq %d: %s\n", q.Seq, q.Reason)
	}
	if len(rep.ConflictSeqs) > 0 {
		fmt.Fprintf(w, "conflicting seqs: %s\n", ranges(rep.ConflictSeqs))
	}
	if rep.KeptAt != "" {
		fmt.Fprintf(w, "restored outbox kept at %s\n", rep.KeptAt)
	}
	fmt.Fprintln(w, "\nnext: mailslotctl reconcile, to check every edge against Postgres")
	return nil
}
