package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/drain"
)

// exitMissing is reconcile's exit status while rows are missing from
// Postgres (or held under a key Postgres gave to another submission).
const exitMissing = 3

// listCap bounds the seqs and ranges a report lists; counts stay exact.
const listCap = 1000

// reconcileReport is one node's comparison of what its edge holds with what
// the Postgres ledger holds for it, over the edge's retained range.
type reconcileReport struct {
	NodeID    string          `json:"node_id"`
	Region    string          `json:"region"`
	EdgeURL   string          `json:"edge_url,omitempty"`
	EdgeError string          `json:"edge_error,omitempty"`
	Checked   bool            `json:"checked"`
	Edge      *outbox.Summary `json:"edge,omitempty"`
	Postgres  *pgNode         `json:"postgres,omitempty"`

	// Rows the edge holds, by what the ledger says of them.
	InLedger       int64 `json:"in_ledger"`      // synced or pending, and in the ledger
	PendingNew     int64 `json:"pending"`        // pending, not yet in the ledger: sync will apply them
	Missing        int64 `json:"missing"`        // marked synced, yet not in the ledger
	Quarantined    int64 `json:"quarantined"`    // set aside by sync as poison
	Conflicts      int64 `json:"conflicts"`      // the ledger holds the seq for another submission
	LedgerOnly     int64 `json:"ledger_only"`    // in the ledger, no longer on the edge (pruned)
	LedgerMaxSeq   int64 `json:"ledger_max_seq"` // highest seq the ledger holds for the node
	LedgerAhead    bool  `json:"ledger_ahead"`   // the ledger holds seqs past the edge's last seq
	GapSeqs        int64 `json:"gap_seqs"`       // seqs in neither place, outside recorded jumps
	DuplicateCount int   `json:"duplicate_submissions"`

	MissingSeqs     []int64           `json:"missing_seqs,omitempty"`
	QuarantinedSeqs []int64           `json:"quarantined_seqs,omitempty"`
	ConflictSeqs    []int64           `json:"conflict_seqs,omitempty"`
	Gaps            []outbox.SeqRange `json:"gaps,omitempty"`

	Requeued    int64 `json:"requeued,omitempty"`
	Fixed       int64 `json:"fixed,omitempty"`
	StillMissed int64 `json:"still_missing,omitempty"`

	missingAll, quarantinedAll []int64
}

type reconcileResult struct {
	Nodes      []*reconcileReport `json:"nodes"`
	Duplicates []drain.Duplicate  `json:"duplicate_submissions"`
	Missing    int64              `json:"missing"`
	Conflicts  int64              `json:"conflicts"`
	Unchecked  int                `json:"unchecked_edges"`
	OK         bool               `json:"ok"`
}

type reconcileFlags struct {
	fix, retryQuarantined bool
	wait                  time.Duration
	page                  int
}

func runReconcile(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "reconcile", "reconcile [--fix] [--json] [--edge URL]... [--edge-template URL] [--node ID]... [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	var only stringList
	ef := addEdgeFlags(fs, e)
	fs.Var(&only, "node", "reconcile only this node (repeatable)")
	var rf reconcileFlags
	fs.BoolVar(&rf.fix, "fix", false, "requeue missing rows on their edge (idempotent) and wait for them to reach Postgres")
	fs.BoolVar(&rf.retryQuarantined, "retry-quarantined", false, "with --fix, requeue quarantined rows too (after fixing their cause)")
	fs.DurationVar(&rf.wait, "wait", time.Minute, "with --fix, how long to wait for requeued rows to reach Postgres")
	fs.IntVar(&rf.page, "page", 5000, "seqs asked of an edge per request (at most 5000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rf.page < 1 || rf.page > 5000 {
		return fmt.Errorf("%w: --page must be between 1 and 5000", errUsage)
	}
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	ec := admin.NewClient(cfg.AdminToken, 30*time.Second)
	reports, err := reconcileTargets(ctx, conn, ec, ef.urls(), *ef.template, only)
	if err != nil {
		return err
	}
	res := reconcileResult{Nodes: reports}
	if res.Duplicates, err = drain.Duplicates(ctx, conn, listCap); err != nil {
		return err
	}
	prog := newProgress(e.stderr, "reconcile")
	for _, r := range reports {
		if r.Edge == nil {
			continue
		}
		if err := compareNode(ctx, conn, ec, r, rf.page, prog); err != nil {
			r.EdgeError, r.Checked = err.Error(), false
			continue
		}
		for _, d := range res.Duplicates {
			if slices.ContainsFunc(d.Keys, func(k string) bool { return strings.HasPrefix(k, r.NodeID+":") }) {
				r.DuplicateCount++
			}
		}
		if rf.fix {
			if err := fixNode(ctx, conn, ec, r, rf, prog); err != nil {
				r.EdgeError = err.Error()
			}
		}
	}
	for _, r := range reports {
		res.Missing += r.Missing - r.Fixed
		res.Conflicts += r.Conflicts
		if r.EdgeError != "" {
			res.Unchecked++
		}
	}
	res.OK = res.Missing == 0 && res.Conflicts == 0 && len(res.Duplicates) == 0 && res.Unchecked == 0
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := printReconcile(e.stdout, res, rf.fix); err != nil {
		return err
	}
	switch {
	case res.Missing > 0 || res.Conflicts > 0 || len(res.Duplicates) > 0:
		return exitError{code: exitMissing, msg: fmt.Sprintf("%d row(s) missing from Postgres, %d conflicting, %d duplicated submission(s)",
			res.Missing, res.Conflicts, len(res.Duplicates))}
	case res.Unchecked > 0:
		return fmt.Errorf("%d edge(s) could not be checked: see the errors above", res.Unchecked)
	}
	return nil
}

// reconcileTargets lists the nodes to reconcile: every node Postgres knows,
// and every edge named, each asked for its outbox summary (which names its
// node) directly or through the template.
func reconcileTargets(ctx context.Context, conn *pgx.Conn, ec *admin.Client, edges []string, tmpl string, only []string) ([]*reconcileReport, error) {
	nodes, err := loadNodes(ctx, conn)
	if err != nil {
		return nil, err
	}
	byID := map[string]*reconcileReport{}
	var out []*reconcileReport
	for _, n := range nodes {
		r := &reconcileReport{NodeID: n.NodeID, Region: n.Region, Postgres: n.Postgres}
		byID[n.NodeID] = r
		out = append(out, r)
	}
	for _, base := range edges {
		sum, err := ec.OutboxSummary(ctx, base)
		if err != nil {
			out = append(out, &reconcileReport{NodeID: "?", EdgeURL: base, EdgeError: err.Error()})
			continue
		}
		r := byID[sum.NodeID]
		if r == nil {
			r = &reconcileReport{NodeID: sum.NodeID}
			byID[sum.NodeID] = r
			out = append(out, r)
		}
		r.EdgeURL, r.Edge = base, &sum
	}
	if tmpl != "" {
		for _, r := range out {
			if r.Edge != nil || r.NodeID == "?" {
				continue
			}
			u, err := admin.EdgeURL(tmpl, r.NodeID)
			if err != nil {
				r.EdgeError = err.Error()
				continue
			}
			r.EdgeURL = u
			sum, err := ec.OutboxSummary(ctx, r.EdgeURL)
			if err != nil {
				r.EdgeError = err.Error()
				continue
			}
			if sum.NodeID != r.NodeID {
				r.EdgeError = fmt.Sprintf("the edge at this URL is node %q, not %q: check --edge-template", sum.NodeID, r.NodeID)
				continue
			}
			r.Edge = &sum
		}
	}
	if len(only) > 0 {
		out = slices.DeleteFunc(out, func(r *reconcileReport) bool { return !slices.Contains(only, r.NodeID) })
		for _, id := range only {
			if byID[id] == nil {
				out = append(out, &reconcileReport{NodeID: id, EdgeError: "unknown node: not in mailslot.nodes and no --edge answered for it"})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].NodeID < out[j].NodeID
	})
	return out, nil
}

// compareNode pages through the seqs the edge holds, from its lowest
// retained seq to its last, and compares each page with the ledger over
// the same range. Sync marks a row synced only after the ledger commit, so
// a row the edge reports synced and the ledger (read after the edge) lacks
// is truly missing.
func compareNode(ctx context.Context, conn *pgx.Conn, ec *admin.Client, r *reconcileReport, page int, prog *progress) error {
	sum := r.Edge
	var err error
	if r.LedgerMaxSeq, err = drain.LedgerMaxSeq(ctx, conn, r.NodeID); err != nil {
		return err
	}
	r.LedgerAhead = r.LedgerMaxSeq > sum.LastSeq
	total := sum.Pending + sum.SyncedRetained + sum.Quarantined
	var seen int64
	if sum.MinSeq == 0 {
		r.Checked = true
		return nil
	}
	expect := sum.MinSeq
	for cursor := sum.MinSeq; cursor <= sum.LastSeq; {
		p, err := ec.OutboxSeqs(ctx, r.EdgeURL, cursor, sum.LastSeq, page)
		if err != nil {
			return err
		}
		if p.NodeID != r.NodeID {
			return fmt.Errorf("the edge answered for node %q, not %q", p.NodeID, r.NodeID)
		}
		coveredTo := sum.LastSeq
		if p.Next != nil {
			coveredTo = *p.Next - 1
		}
		ledger, err := drain.LedgerRange(ctx, conn, r.NodeID, cursor, coveredTo)
		if err != nil {
			return err
		}
		expect = r.classify(p.Rows, ledger, expect)
		seen += int64(len(p.Rows))
		prog.report("node %s: compared %d of %d rows", r.NodeID, seen, total)
		if coveredTo == sum.LastSeq {
			break
		}
		cursor = coveredTo + 1
	}
	if expect <= sum.LastSeq {
		r.gap(expect, sum.LastSeq)
	}
	r.MissingSeqs = r.missingAll[:min(len(r.missingAll), listCap)]
	r.QuarantinedSeqs = r.quarantinedAll[:min(len(r.quarantinedAll), listCap)]
	r.Checked = true
	return nil
}

// classify merges one page of the edge's rows with the ledger's keys over
// the same range (both in seq order) and returns the next seq expected.
func (r *reconcileReport) classify(held []outbox.Held, ledger []drain.LedgerKey, expect int64) int64 {
	i, j := 0, 0
	for i < len(held) || j < len(ledger) {
		var seq int64
		switch {
		case j == len(ledger) || (i < len(held) && held[i].Seq < ledger[j].Seq):
			h := held[i]
			seq = h.Seq
			switch h.State {
			case outbox.StatePending:
				r.PendingNew++
			case outbox.StateQuarantined:
				r.Quarantined++
				r.quarantinedAll = append(r.quarantinedAll, seq)
			default:
				r.Missing++
				r.missingAll = append(r.missingAll, seq)
			}
			i++
		case i == len(held) || ledger[j].Seq < held[i].Seq:
			seq = ledger[j].Seq
			r.LedgerOnly++
			j++
		default:
			seq = held[i].Seq
			if held[i].ID != ledger[j].SubmissionID {
				r.Conflicts++
				r.ConflictSeqs = appendCapped(r.ConflictSeqs, seq)
			} else {
				r.InLedger++
			}
			i, j = i+1, j+1
		}
		if seq > expect {
			r.gap(expect, seq-1)
		}
		expect = seq + 1
	}
	return expect
}

// gap records [first, last] as seqs in neither place, less the ranges the
// edge's recorded jumps explain.
func (r *reconcileReport) gap(first, last int64) {
	pieces := []outbox.SeqRange{{First: first, Last: last}}
	for _, j := range r.Edge.Jumps {
		var next []outbox.SeqRange
		for _, p := range pieces {
			lo, hi := j.From+1, j.To
			if hi < p.First || lo > p.Last {
				next = append(next, p)
				continue
			}
			if p.First < lo {
				next = append(next, outbox.SeqRange{First: p.First, Last: lo - 1})
			}
			if p.Last > hi {
				next = append(next, outbox.SeqRange{First: hi + 1, Last: p.Last})
			}
		}
		pieces = next
	}
	for _, p := range pieces {
		r.GapSeqs += p.Last - p.First + 1
		if len(r.Gaps) < listCap {
			r.Gaps = append(r.Gaps, p)
		}
	}
}

func appendCapped(s []int64, v int64) []int64 {
	if len(s) < listCap {
		s = append(s, v)
	}
	return s
}

// fixNode requeues the node's missing rows (and quarantined ones when
// asked) on its edge, then waits for the edge's own sync to bring them to
// the ledger. Requeueing twice, or a row Postgres already holds, changes
// nothing: the ledger turns it into a replay.
func fixNode(ctx context.Context, conn *pgx.Conn, ec *admin.Client, r *reconcileReport, rf reconcileFlags, prog *progress) error {
	seqs := slices.Clone(r.missingAll)
	if rf.retryQuarantined {
		seqs = append(seqs, r.quarantinedAll...)
	}
	if len(seqs) == 0 {
		return nil
	}
	for chunk := range slices.Chunk(seqs, 5000) {
		ans, err := ec.Requeue(ctx, r.EdgeURL, chunk)
		if err != nil {
			return fmt.Errorf("requeue on the edge: %w", err)
		}
		r.Requeued += ans.Requeued
	}
	deadline := time.Now().Add(rf.wait)
	for {
		arrived, err := drain.CountInLedger(ctx, conn, r.NodeID, r.missingAll, false)
		if err != nil {
			return err
		}
		r.Fixed = arrived
		r.StillMissed = r.Missing - arrived
		prog.report("node %s: %d of %d requeued rows in Postgres", r.NodeID, arrived, r.Missing)
		if r.StillMissed == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d requeued row(s) not in Postgres after %v: check the edge's sync (mailslotctl status) and run reconcile again", r.StillMissed, rf.wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printReconcile(w io.Writer, res reconcileResult, fix bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREGION\tEDGE SEQS\tHELD\tPENDING\tQUARANTINED\tIN LEDGER\tMISSING\tCONFLICTS\tGAPS\tRESULT")
	for _, r := range res.Nodes {
		seqs, held, pending, quar, inLedger, missing, conflicts, gaps := "-", "-", "-", "-", "-", "-", "-", "-"
		result := "ok"
		if r.Edge != nil {
			seqs = fmt.Sprintf("%d-%d", r.Edge.MinSeq, r.Edge.LastSeq)
			held = fmt.Sprint(r.Edge.Pending + r.Edge.SyncedRetained + r.Edge.Quarantined)
		}
		if r.Checked {
			pending, quar, inLedger = fmt.Sprint(r.PendingNew), fmt.Sprint(r.Quarantined), fmt.Sprint(r.InLedger)
			missing, conflicts, gaps = fmt.Sprint(r.Missing), fmt.Sprint(r.Conflicts), fmt.Sprint(r.GapSeqs)
		} else if r.Postgres != nil {
			inLedger = "?"
		}
		switch {
		case r.EdgeError != "":
			result = "ERROR: " + r.EdgeError
		case !r.Checked && r.EdgeURL == "":
			result = "not asked (no --edge or --edge-template for it)"
		case fix && r.Missing > 0 && r.StillMissed == 0:
			result = fmt.Sprintf("fixed: %d requeued row(s) now in Postgres", r.Fixed)
		case r.Missing > 0:
			result = "MISSING: run with --fix"
		case r.Conflicts > 0:
			result = "CONFLICTS: see below"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.NodeID, orDash(r.Region), seqs, held, pending, quar, inLedger, missing, conflicts, gaps, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range res.Nodes {
		if !r.Checked {
			continue
		}
		if r.Missing > 0 {
			fmt.Fprintf(w, "\n%s: missing from Postgres (synced on the edge, not in the ledger): %s\n", r.NodeID, ranges(r.missingAll))
		}
		if r.Conflicts > 0 {
			fmt.Fprintf(w, "\n%s: seqs the ledger holds for another submission: %s\n"+
				"  the edge reused keys Postgres had already applied; --fix cannot replay these: export them from the edge and re-submit them\n",
				r.NodeID, ranges(r.ConflictSeqs))
		}
		if r.Quarantined > 0 {
			fmt.Fprintf(w, "\n%s: quarantined on the edge (see mailslotctl status for reasons): %s\n", r.NodeID, ranges(r.quarantinedAll))
		}
		if r.GapSeqs > 0 {
			fmt.Fprintf(w, "\n%s: %d seq(s) in neither the edge nor the ledger: %s\n", r.NodeID, r.GapSeqs, rangeList(r.Gaps))
		}
		if r.LedgerAhead {
			fmt.Fprintf(w, "\n%s: the ledger holds seqs up to %d, past the edge's last seq %d: the edge restarted behind Postgres\n",
				r.NodeID, r.LedgerMaxSeq, r.Edge.LastSeq)
		}
	}
	if len(res.Duplicates) == 0 {
		fmt.Fprintln(w, "\nduplicates: none (a key (node_id, seq) cannot repeat: it is the ledger's primary key; no submission id is in the ledger twice)")
	} else {
		fmt.Fprintf(w, "\nduplicates: %d submission id(s) are in the ledger under more than one key:\n", len(res.Duplicates))
		for _, d := range res.Duplicates {
			fmt.Fprintf(w, "  %s: %s\n", d.SubmissionID, strings.Join(d.Keys, ", "))
		}
	}
	return nil
}

// ranges prints sorted seqs as runs: 1-4, 7, 9-10.
func ranges(seqs []int64) string {
	var rs []outbox.SeqRange
	for _, s := range seqs {
		if n := len(rs); n > 0 && rs[n-1].Last+1 == s {
			rs[n-1].Last = s
			continue
		}
		rs = append(rs, outbox.SeqRange{First: s, Last: s})
	}
	return rangeList(rs)
}

func rangeList(rs []outbox.SeqRange) string {
	parts := make([]string, 0, min(len(rs), 20))
	for i, r := range rs {
		if i == 20 {
			parts = append(parts, fmt.Sprintf("… (%d runs)", len(rs)))
			break
		}
		if r.First == r.Last {
			parts = append(parts, strconv.FormatInt(r.First, 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.First, r.Last))
		}
	}
	return strings.Join(parts, ", ")
}

// progress writes a line to stderr at most every two seconds, for runs
// long enough to need one.
type progress struct {
	w    io.Writer
	name string
	last time.Time
}

func newProgress(w io.Writer, name string) *progress {
	return &progress{w: w, name: name, last: time.Now()}
}

func (p *progress) report(format string, args ...any) {
	if time.Since(p.last) < 2*time.Second {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, p.name+": "+format+"\n", args...)
}
