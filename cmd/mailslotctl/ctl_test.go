package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/drain"
)

// These tests run the migrate and status commands in-process (run) against
// real Postgres 18 databases and real edges (package edge on loopback ports).
// Helpers shared with the other command tests (ctl, startInproc, edgeEnv,
// closedURL, postLead, count) are in fleet_test.go.

// columns splits tabwriter output into rows of cells (cells are apart by
// two spaces or more; a cell may hold single spaces, like "3s ago").
func columns(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" { // the node table ends; the summaries (mail, …) follow
			break
		}
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

func TestMigrateCommand(t *testing.T) {
	dbURL := pgtest.NewEmptyURL(t)
	ms, err := pgschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	flag := []string{"--database-url", dbURL}
	fromEnv := map[string]string{"DATABASE_URL": dbURL}

	// --status on an empty database: every migration pending, nothing made.
	out, _, err := ctl(t, nil, append([]string{"migrate", "--status"}, flag...)...)
	if err != nil {
		t.Fatalf("migrate --status: %v", err)
	}
	rows := columns(out)
	if !slices.Equal(rows[0], []string{"VERSION", "NAME", "APPLIED"}) || len(rows) != len(ms)+1 {
		t.Fatalf("migrate --status table:\n%s", out)
	}
	for i, m := range ms {
		if want := []string{fmt.Sprint(m.Version), m.Name, "pending"}; !slices.Equal(rows[i+1], want) {
			t.Errorf("row %d = %q, want %q", i+1, rows[i+1], want)
		}
	}
	pool := pgtest.Pool(t, dbURL)
	var schemas int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = 'mailslot'`).Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("migrate --status created the schema (%d, %v)", schemas, err)
	}

	// migrate, with the URL from the environment.
	out, _, err = ctl(t, fromEnv, "migrate")
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var want strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&want, "applied %s\n", m.Name)
	}
	fmt.Fprintf(&want, "schema migrated from version 0 to %d\n", len(ms))
	if out != want.String() {
		t.Errorf("migrate printed:\n%s\nwant:\n%s", out, want.String())
	}

	// Again: nothing to do.
	out, _, err = ctl(t, nil, append([]string{"migrate"}, flag...)...)
	if err != nil || out != fmt.Sprintf("schema is up to date at version %d\n", len(ms)) {
		t.Errorf("second migrate: %q, %v", out, err)
	}
	if got := count(t, pool, `SELECT count(*) FROM mailslot.schema_version`); got != int64(len(ms)) {
		t.Errorf("schema_version rows = %d, want %d", got, len(ms))
	}

	// --status after: each applied, with its UTC time.
	out, _, err = ctl(t, fromEnv, "migrate", "--status")
	if err != nil {
		t.Fatalf("migrate --status: %v", err)
	}
	applied := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	for i, row := range columns(out)[1:] {
		if len(row) != 3 || row[1] != ms[i].Name || !applied.MatchString(row[2]) {
			t.Errorf("migrate --status row %q, want %s applied at a UTC time", row, ms[i].Name)
		}
	}
}

// statusHeader is the table's header, cell by cell.
var statusHeader = []string{"NODE", "REGION", "STATE", "PENDING", "OLDEST", "LAST SYNC", "SYNCED (PG)", "LAST SEQ (PG)", "QUARANTINED", "REPLICA LAG", "ERROR"}

func TestStatusCommand(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	e := startInproc(t, edgeEnv("edge-1", t.TempDir(), dbURL, ""))
	const leads = 7
	for i := range leads {
		postLead(t, e.URL, fmt.Sprintf("status-%d@example.com", i))
	}
	testsync.Until(t, 60*time.Second, "the edge to sync", func() bool {
		st, err := e.Sync.Status(context.Background())
		return err == nil && st.Pending == 0 && st.RowsSynced == leads && st.State == drain.StateIdle
	})
	admin := map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_ADMIN_TOKEN": edgetest.AdminToken}

	t.Run("table, edge through the private listener", func(t *testing.T) {
		out, _, err := ctl(t, admin, "status", "--edge", e.PrivateURL)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		rows := columns(out)
		if !slices.Equal(rows[0], statusHeader) {
			t.Fatalf("header %q, want %q", rows[0], statusHeader)
		}
		if len(rows) != 2 {
			t.Fatalf("want one node row:\n%s", out)
		}
		row := rows[1]
		want := []string{"edge-1", "r-edge-1", "idle", "0", "-", "", fmt.Sprint(leads), fmt.Sprint(leads), "0", "-", "-"}
		if len(row) != len(want) || !strings.HasSuffix(row[5], " ago") {
			t.Fatalf("row %q, want %q with LAST SYNC \"… ago\"", row, want)
		}
		row[5] = ""
		if !slices.Equal(row, want) {
			t.Errorf("row %q, want %q", row, want)
		}
	})

	t.Run("json, edge through the public listener with the admin token", func(t *testing.T) {
		out, _, err := ctl(t, admin, "status", "--json", "--edge", e.URL)
		if err != nil {
			t.Fatalf("status --json: %v", err)
		}
		var nodes []nodeStatus
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, out)
		}
		if len(nodes) != 1 || nodes[0].Postgres == nil || nodes[0].Edge == nil {
			t.Fatalf("status --json = %s", out)
		}
		n := nodes[0]
		if n.NodeID != "edge-1" || n.Region != "r-edge-1" || n.EdgeURL != e.URL || n.EdgeError != "" ||
			n.Postgres.RowsSynced != leads || n.Postgres.LastSeq != leads || n.Postgres.LastSyncAt == nil ||
			n.Edge.Pending != 0 || n.Edge.RowsSynced != leads || !n.Edge.PostgresReachable || n.Edge.SchemaVersion != pgschema.Required() {
			t.Errorf("status --json = %s", out)
		}
	})

	t.Run("edge not asked", func(t *testing.T) {
		out, _, err := ctl(t, admin, "status")
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		rows := columns(out)
		if len(rows) != 2 || rows[1][0] != "edge-1" || rows[1][2] != "not asked" || rows[1][6] != fmt.Sprint(leads) {
			t.Errorf("status without --edge:\n%s", out)
		}
	})

	t.Run("edge template", func(t *testing.T) {
		out, _, err := ctl(t, admin, "status", "--json", "--edge-template", strings.Replace(e.PrivateURL, "127.0.0.1", "{node}", 1))
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		// "edge-1" is not a host name here: the row says the edge was
		// unreachable and the command still succeeds.
		nodes := decodeJSON[[]nodeStatus](t, out)
		if len(nodes) != 1 || nodes[0].Edge != nil || !strings.Contains(nodes[0].EdgeURL, "edge-1") || nodes[0].EdgeError == "" {
			t.Errorf("status --edge-template = %s", out)
		}
	})
}

func TestStatusCommandEdgeErrors(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	e := startInproc(t, edgeEnv("edge-2", t.TempDir(), dbURL, ""))
	closedEdge := "http://" + edgetest.FreeAddr(t)
	tests := []struct {
		name  string
		token string
		edge  string
		want  string // in the row's error
	}{
		{"unreachable edge", edgetest.AdminToken, closedEdge, "unreachable"},
		{"wrong admin token", "not-the-token", e.URL, "MAILSLOT_ADMIN_TOKEN"},
		{"no admin token", "", e.URL, "MAILSLOT_ADMIN_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": dbURL, "MAILSLOT_ADMIN_TOKEN": tt.token}
			out, _, err := ctl(t, env, "status", "--edge", tt.edge)
			if code := exitCode(err); code != 0 {
				t.Fatalf("exit %d (%v); an edge's trouble is a row, not a failure", code, err)
			}
			rows := columns(out)
			if len(rows) != 2 || rows[1][0] != "?" || rows[1][2] != "unreachable" || !strings.Contains(rows[1][10], tt.want) {
				t.Errorf("status:\n%s\nwant a row for %s with %q in ERROR", out, tt.edge, tt.want)
			}
			if tt.token != "" && strings.Contains(out, tt.token) {
				t.Errorf("the output shows the admin token")
			}
			jout, _, err := ctl(t, env, "status", "--json", "--edge", tt.edge)
			if err != nil {
				t.Fatalf("status --json: %v", err)
			}
			nodes := decodeJSON[[]nodeStatus](t, jout)
			if len(nodes) != 1 || nodes[0].EdgeURL != tt.edge || !strings.Contains(nodes[0].EdgeError, tt.want) {
				t.Errorf("status --json = %s", jout)
			}
		})
	}
}

func TestMigrateAndStatusDatabaseErrors(t *testing.T) {
	nothing := closedURL(t) // nothing listens there
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		usage    bool
		contains []string
	}{
		{"migrate without a database", nil, []string{"migrate"}, true, []string{"--database-url", "DATABASE_URL"}},
		{"migrate --status without a database", nil, []string{"migrate", "--status"}, true, []string{"--database-url"}},
		{"status without a database", nil, []string{"status"}, true, []string{"--database-url", "DATABASE_URL"}},
		{"migrate with an invalid URL", map[string]string{"DATABASE_URL": "::not a url"}, []string{"migrate"}, true, []string{"not a valid PostgreSQL URL"}},
		{"migrate against nothing", nil, []string{"migrate", "--database-url", nothing}, false, []string{"fly proxy"}},
		{"status against nothing", map[string]string{"DATABASE_URL": nothing}, []string{"status"}, false, []string{"fly proxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ctl(t, tt.env, tt.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if got := errors.Is(err, errUsage); got != tt.usage {
				t.Errorf("usage error = %v, want %v (%v)", got, tt.usage, err)
			}
			if want := map[bool]int{true: 2, false: 1}[tt.usage]; exitCode(err) != want {
				t.Errorf("exit %d, want %d", exitCode(err), want)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}

	t.Run("status on an unmigrated database", func(t *testing.T) {
		_, _, err := ctl(t, map[string]string{"DATABASE_URL": pgtest.NewEmptyURL(t)}, "status")
		if err == nil || !strings.Contains(err.Error(), "mailslotctl migrate") {
			t.Errorf("status on an empty database: %v; want advice to run mailslotctl migrate", err)
		}
	})
}
