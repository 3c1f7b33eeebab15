package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/edge/admin"
	"github.com/mailslot/mailslot/sync/drain"
)

// nodeStatus is one line of `mailslotctl status`.
type nodeStatus struct {
	NodeID    string            `json:"node_id"`
	Region    string            `json:"region"`
	Postgres  *pgNode           `json:"postgres"`
	Edge      *admin.SyncStatus `json:"edge"`
	EdgeURL   string            `json:"edge_url,omitempty"`
	EdgeError string            `json:"edge_error,omitempty"`
}

// pgNode is what Postgres knows about a node.
type pgNode struct {
	LastSeq    int64      `json:"last_seq"`
	RowsSynced int64      `json:"rows_synced"`
	LastSyncAt *time.Time `json:"last_sync_at"`
}

// edgeFlags are the flags that name edges to ask: --edge (repeatable, and
// $MAILSLOT_EDGES) and --edge-template (and $MAILSLOT_EDGE_URL_TEMPLATE).
type edgeFlags struct {
	named    stringList
	template *string
	getenv   func(string) string
}

func addEdgeFlags(fs *flag.FlagSet, e env) *edgeFlags {
	f := &edgeFlags{getenv: e.getenv}
	fs.Var(&f.named, "edge", "base URL of an edge to ask (repeatable; also $MAILSLOT_EDGES, comma-separated)")
	f.template = fs.String("edge-template", e.getenv("MAILSLOT_EDGE_URL_TEMPLATE"),
		"URL of each node's edge with {node} for its id, e.g. http://{node}.vm.mailslot.internal:9090")
	return f
}

// urls are the edges named by flag and by $MAILSLOT_EDGES.
func (f *edgeFlags) urls() []string {
	out := append([]string{}, f.named...)
	for _, v := range strings.Split(f.getenv("MAILSLOT_EDGES"), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// forNode is the template's URL for a node, or "" without a template. A
// node id that could not name a node is refused, not substituted.
func (f *edgeFlags) forNode(nodeID string) (string, error) {
	if *f.template == "" {
		return "", nil
	}
	return admin.EdgeURL(*f.template, nodeID)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runStatus(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "status", "status [--json] [--edge URL]... [--edge-template URL] [--database-url URL]")
	dbFlag := fs.String("database-url", "", "Postgres URL (default $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	ef := addEdgeFlags(fs, e)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	edges := ef.urls()
	conn, err := connectFlag(ctx, e, *dbFlag)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	nodes, err := loadNodes(ctx, conn)
	if err != nil {
		return err
	}
	byID := map[string]*nodeStatus{}
	for _, n := range nodes {
		byID[n.NodeID] = n
	}
	client := admin.NewClient(cfg.AdminToken, 5*time.Second)
	asked := map[string]bool{}
	for _, base := range edges {
		st, err := client.SyncStatus(ctx, base)
		if err != nil {
			nodes = append(nodes, &nodeStatus{NodeID: "?", EdgeURL: base, EdgeError: err.Error()})
			continue
		}
		n := byID[st.NodeID]
		if n == nil {
			n = &nodeStatus{NodeID: st.NodeID, Region: st.Region}
			byID[st.NodeID] = n
			nodes = append(nodes, n)
		}
		n.Edge, n.EdgeURL = &st, base
		asked[st.NodeID] = true
	}
	if *ef.template != "" {
		for _, n := range nodes {
			if asked[n.NodeID] || n.NodeID == "?" {
				continue
			}
			if n.EdgeURL, err = ef.forNode(n.NodeID); err != nil {
				n.EdgeError = err.Error()
				continue
			}
			st, err := client.SyncStatus(ctx, n.EdgeURL)
			if err != nil {
				n.EdgeError = err.Error()
				continue
			}
			n.Edge = &st
		}
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		if nodes[i].Region != nodes[j].Region {
			return nodes[i].Region < nodes[j].Region
		}
		return nodes[i].NodeID < nodes[j].NodeID
	})
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(nodes)
	}
	if err := printStatus(e.stdout, nodes, time.Now()); err != nil {
		return err
	}
	if err := writeWebhookSummary(ctx, e, conn); err != nil {
		return err
	}
	if err := writeMailSummary(ctx, e, conn); err != nil {
		return err
	}
	return writeImageSummary(ctx, e, cfg, conn)
}

// loadNodes lists the nodes Postgres knows (drain.Nodes), one status line
// each.
func loadNodes(ctx context.Context, conn *pgx.Conn) ([]*nodeStatus, error) {
	nodes, err := drain.Nodes(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make([]*nodeStatus, len(nodes))
	for i, n := range nodes {
		out[i] = &nodeStatus{NodeID: n.NodeID, Region: n.Region,
			Postgres: &pgNode{LastSeq: n.LastSeq, RowsSynced: n.RowsSynced, LastSyncAt: n.LastSyncAt}}
	}
	return out, nil
}

func printStatus(w io.Writer, nodes []*nodeStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREGION\tSTATE\tPENDING\tOLDEST\tLAST SYNC\tSYNCED (PG)\tLAST SEQ (PG)\tQUARANTINED\tREPLICA LAG\tERROR")
	for _, n := range nodes {
		state, pending, oldest, quarantined, lastErr := "-", "-", "-", "-", n.EdgeError
		replicaLag := "-"
		lastSync, synced, lastSeq := "never", "0", "0"
		if n.Postgres != nil {
			synced = fmt.Sprint(n.Postgres.RowsSynced)
			lastSeq = fmt.Sprint(n.Postgres.LastSeq)
			if n.Postgres.LastSyncAt != nil {
				lastSync = ago(now, *n.Postgres.LastSyncAt)
			}
		}
		if s := n.Edge; s != nil {
			state, pending, quarantined = s.State, fmt.Sprint(s.Pending), fmt.Sprint(s.Quarantined)
			if s.Pending > 0 {
				oldest = (time.Duration(s.OldestPendingAgeSeconds * float64(time.Second))).Round(time.Second).String()
			}
			if lastErr == "" {
				lastErr = s.LastError
			}
			if r := s.Replica; r != nil {
				replicaLag = (time.Duration(r.LagSeconds * float64(time.Second))).Round(10 * time.Millisecond).String()
				if lastErr == "" && r.LastError != "" {
					lastErr = "replica: " + r.LastError
				}
			}
		} else if n.EdgeURL == "" {
			state = "not asked"
		} else {
			state = "unreachable"
		}
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			n.NodeID, orDash(n.Region), state, pending, oldest, lastSync, synced, lastSeq, quarantined, replicaLag, lastErr)
	}
	return tw.Flush()
}

func ago(now, t time.Time) string {
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
