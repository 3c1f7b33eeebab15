package pgschema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/pii"
	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/pgschema"
	"github.com/mailslot/mailslot/sync/drain"
)

// createEdgeRole creates the edge's login role. Roles are cluster-wide, so
// another test (or test binary) may be creating it at the same moment.
func createEdgeRole(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), `DO $$ BEGIN CREATE ROLE mailslot_edge LOGIN PASSWORD 'x';
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`); err != nil {
		t.Fatalf("create role mailslot_edge: %v", err)
	}
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func migrationNames(t *testing.T) []string {
	t.Helper()
	ms, err := pgschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}

type versionRow struct {
	Version int
	Name    string
	At      time.Time
}

func versionRows(t *testing.T, conn *pgx.Conn) []versionRow {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT version, name, applied_at FROM mailslot.schema_version ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_version: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[versionRow])
	if err != nil {
		t.Fatalf("read schema_version: %v", err)
	}
	return out
}

// catalog describes everything in the mailslot schema that a migration can
// create or change: columns with their types and defaults, constraints,
// indexes and privileges.
func catalog(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var out string
	err := conn.QueryRow(context.Background(), `
		SELECT concat_ws(E'\n',
		  (SELECT string_agg(format('%s.%s %s %s %s %s', table_name, column_name, data_type, is_nullable,
		                            column_default, generation_expression), E'\n' ORDER BY table_name, ordinal_position)
		   FROM information_schema.columns WHERE table_schema = 'mailslot'),
		  (SELECT string_agg(format('%s %s', conname, pg_get_constraintdef(c.oid)), E'\n' ORDER BY conname)
		   FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'mailslot'),
		  (SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'mailslot'),
		  (SELECT string_agg(format('%s %s %s', table_name, grantee, privilege_type), E'\n'
		                     ORDER BY table_name, grantee, privilege_type)
		   FROM information_schema.role_table_grants WHERE table_schema = 'mailslot'))`).Scan(&out)
	if err != nil {
		t.Fatalf("read catalog: %v", err)
	}
	return out
}

func TestMigrateEmptyDatabaseAppliesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.NewEmptyURL(t))
	res, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	want := migrationNames(t)
	if res.From != 0 || res.To != len(want) || !slices.Equal(res.Applied, want) {
		t.Errorf("Migrate = %+v, want From 0, To %d, Applied %v", res, len(want), want)
	}
	rows := versionRows(t, conn)
	if len(rows) != len(want) {
		t.Fatalf("schema_version has %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, r := range rows {
		if r.Version != i+1 || r.Name != want[i] {
			t.Errorf("schema_version row %d = %d %q, want %d %q", i, r.Version, r.Name, i+1, want[i])
		}
	}
	v, err := pgschema.Version(ctx, conn)
	if err != nil || v != pgschema.Required() {
		t.Errorf("Version = %d, %v; want %d", v, err, pgschema.Required())
	}
	for _, table := range []string{"nodes", "ledger", "leads", "consent_records", "events"} {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass('mailslot.' || $1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("table mailslot.%s missing after Migrate (err %v)", table, err)
		}
	}
	hist, err := pgschema.History(ctx, conn)
	if err != nil || len(hist) != len(want) {
		t.Errorf("History = %d rows, %v; want %d", len(hist), err, len(want))
	}
}

func TestMigrateTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.NewEmptyURL(t))
	if _, err := pgschema.Migrate(ctx, conn); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	beforeRows, beforeCat := versionRows(t, conn), catalog(t, conn)
	res, err := pgschema.Migrate(ctx, conn)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n := pgschema.Required(); res.From != n || res.To != n || len(res.Applied) != 0 {
		t.Errorf("second Migrate = %+v, want From=To=%d and nothing applied", res, n)
	}
	if after := versionRows(t, conn); !slices.Equal(after, beforeRows) {
		t.Errorf("schema_version changed:\nbefore %+v\nafter  %+v", beforeRows, after)
	}
	if after := catalog(t, conn); after != beforeCat {
		t.Errorf("catalog changed:\nbefore:\n%s\nafter:\n%s", beforeCat, after)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	// A race shows up only sometimes: try a few empty databases.
	for round := range 4 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			dbURL := pgtest.NewEmptyURL(t)
			conns := []*pgx.Conn{connect(t, dbURL), connect(t, dbURL)}
			// With the edge role present both migrators also run the grants.
			createEdgeRole(t, conns[0])
			results := make([]pgschema.Result, len(conns))
			errs := make([]error, len(conns))
			var start, done sync.WaitGroup
			start.Add(1)
			for i, c := range conns {
				done.Add(1)
				go func() {
					defer done.Done()
					start.Wait()
					results[i], errs[i] = pgschema.Migrate(context.Background(), c)
				}()
			}
			start.Done()
			done.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("Migrate on connection %d: %v", i, err)
				}
			}
			// Each migration is applied by exactly one of the two.
			applied := append(slices.Clone(results[0].Applied), results[1].Applied...)
			slices.Sort(applied)
			if want := migrationNames(t); !slices.Equal(applied, want) {
				t.Errorf("applied between them %v, want each of %v once", applied, want)
			}
			rows := versionRows(t, conns[0])
			if len(rows) != pgschema.Required() {
				t.Errorf("schema_version has %d rows, want %d", len(rows), pgschema.Required())
			}
		})
	}
}

func TestVersionWithoutSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup string
	}{
		{"empty database", ``},
		{"schema without version table", `CREATE SCHEMA mailslot`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := connect(t, pgtest.NewEmptyURL(t))
			if tt.setup != "" {
				if _, err := conn.Exec(context.Background(), tt.setup); err != nil {
					t.Fatal(err)
				}
			}
			v, err := pgschema.Version(context.Background(), conn)
			if err != nil || v != 0 {
				t.Errorf("Version = %d, %v; want 0, nil", v, err)
			}
		})
	}
}

func TestRequiredIsTheNumberOfMigrationFiles(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	numbered := regexp.MustCompile(`^[0-9]{3}_[a-z0-9_]+\.sql$`)
	files := 0
	for _, e := range entries {
		if numbered.MatchString(e.Name()) {
			files++
		}
	}
	if files == 0 || pgschema.Required() != files {
		t.Errorf("Required() = %d, want the %d NNN_name.sql files", pgschema.Required(), files)
	}
	ms, err := pgschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d is %s (version %d)", i, m.Name, m.Version)
		}
	}
}

// TestEdgeRoleCanSyncButNotChangeTheSchema connects as mailslot_edge, as
// production edges do, and runs a whole sync through the drain worker;
// then shows that the role can do nothing else.
func TestEdgeRoleCanSyncButNotChangeTheSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewURL(t)
	owner := connect(t, dbURL)
	createEdgeRole(t, owner)
	if _, err := pgschema.Migrate(ctx, owner); err != nil {
		t.Fatalf("Migrate (grants): %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("mailslot_edge", "x")
	edgeURL := u.String()

	out, err := outbox.Open(ctx, outbox.Options{Dir: t.TempDir(), NodeID: "edge-role-node"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	hasher := pii.NewHasher([]byte("pepper"))
	const leads = 20
	for i := range leads {
		email := fmt.Sprintf("role%d@example.com", i%15) // some addresses twice: the upsert's UPDATE runs
		submit(t, out, outbox.Record{ID: uuid.NewString(), Kind: mailslot.KindLead, ReceivedAt: time.Now().UTC(),
			Payload: leadPayload(t, email, "Ann"), EmailHMAC: hasher.Email(email), IPHMAC: hasher.IP("192.0.2.1")})
	}
	submit(t, out, outbox.Record{ID: uuid.NewString(), Kind: mailslot.KindEvent, ReceivedAt: time.Now().UTC(),
		Payload: []byte(`{"type":"page_view","property":"site.example"}`)})

	w, err := drain.New(drain.Options{Outbox: out, DatabaseURL: edgeURL, NodeID: "edge-role-node", Region: "test",
		BatchSize: 8, Interval: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(wctx) }()
	var st drain.Status
	done, _ := testsync.Within(30*time.Second, func() (bool, string) {
		var err error
		if st, err = w.Status(ctx); err != nil {
			t.Fatal(err)
		}
		return st.Pending == 0 || st.Quarantined > 0, ""
	})
	if !done || st.Quarantined > 0 {
		cancel()
		<-stopped
		t.Fatalf("sync as mailslot_edge did not finish: %+v", st)
	}
	cancel()
	<-stopped
	var ledger, nLeads, consent, events int
	if err := owner.QueryRow(ctx, `SELECT (SELECT count(*) FROM mailslot.ledger), (SELECT count(*) FROM mailslot.leads),
		(SELECT count(*) FROM mailslot.consent_records), (SELECT count(*) FROM mailslot.events)`).
		Scan(&ledger, &nLeads, &consent, &events); err != nil {
		t.Fatal(err)
	}
	if ledger != leads+1 || nLeads != 15 || consent != leads || events != 1 {
		t.Errorf("after sync as mailslot_edge: ledger %d leads %d consent %d events %d; want %d 15 %d 1",
			ledger, nLeads, consent, events, leads+1, leads)
	}

	edge := connect(t, edgeURL)
	var who string
	if err := edge.QueryRow(ctx, `SELECT current_user`).Scan(&who); err != nil || who != "mailslot_edge" {
		t.Fatalf("current_user = %q, %v", who, err)
	}
	// DELETE on leads is granted for erasure (grants.sql), so it is not here.
	refused := []string{
		`CREATE TABLE mailslot.evil (id int)`,
		`CREATE TABLE public.evil (id int)`,
		`DROP TABLE mailslot.leads`,
		`ALTER TABLE mailslot.leads ADD COLUMN evil int`,
		`TRUNCATE mailslot.leads`,
		`DELETE FROM mailslot.ledger`,
		`UPDATE mailslot.ledger SET outcome = 'evil'`,
		`DELETE FROM mailslot.consent_records`,
		`DELETE FROM mailslot.events`,
		`DELETE FROM mailslot.schema_version`,
		`INSERT INTO mailslot.schema_version (version, name) VALUES (999, 'evil')`,
		`CREATE SCHEMA evil`,
	}
	for _, stmt := range refused {
		t.Run(stmt, func(t *testing.T) {
			_, err := edge.Exec(ctx, stmt)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("as mailslot_edge: %v; want permission denied (42501)", err)
			}
		})
	}
}

func submit(t *testing.T, out *outbox.Outbox, r outbox.Record) {
	t.Helper()
	if _, err := out.Submit(context.Background(), outbox.Submission{Records: []outbox.Record{r}}); err != nil {
		t.Fatalf("submit: %v", err)
	}
}

func leadPayload(t *testing.T, email, name string) []byte {
	t.Helper()
	b, err := json.Marshal(mailslot.LeadPayload{
		Lead: mailslot.Lead{Email: email, Property: "site.example", Consent: mailslot.ConsentExpress, Name: name,
			PolicyVersion: "2026-01", UTM: mailslot.UTM{Source: "news"}},
		ConsentRecord: mailslot.ConsentRecord{Property: "site.example", Status: mailslot.ConsentExpress, PolicyVersion: "2026-01"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
