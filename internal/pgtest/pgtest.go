// Package pgtest gives tests their own PostgreSQL 18 database, migrated to
// the current schema. `make test` starts the server and sets
// MAILSLOT_TEST_DATABASE_URL; without it these tests fail with the fix
// rather than skip.
//
// Each test gets a new database cloned from a template that is migrated
// once per schema (its name carries a hash of the migrations), so a test
// costs one CREATE DATABASE instead of a migration run, and tests never see
// each other's rows. Connections run with an empty search_path so that an
// unqualified table name fails loudly.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailslot/mailslot/pgschema"
)

// EnvURL names the variable holding an admin URL of the test server.
const EnvURL = "MAILSLOT_TEST_DATABASE_URL"

// AdminURL is the test server's admin URL; the test fails without it.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		tb.Fatalf("%s is not set: run the tests with `make test`, which starts PostgreSQL 18 and sets it", EnvURL)
	}
	return u
}

// NewURL creates a fresh migrated database and returns its URL. The
// database is dropped when the test ends.
func NewURL(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL(tb))
	if err != nil {
		tb.Fatalf("connect to test Postgres: %v", err)
	}
	defer conn.Close(ctx)
	tpl, err := template(ctx, conn, AdminURL(tb))
	if err != nil {
		tb.Fatalf("prepare template database: %v", err)
	}
	return newDatabase(tb, conn, "mailslot_t_", " TEMPLATE "+tpl)
}

// NewEmptyURL creates a database with no schema at all, for tests of
// migrating and of a schema that is behind, and returns its URL. The
// database is dropped when the test ends.
func NewEmptyURL(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL(tb))
	if err != nil {
		tb.Fatalf("connect to test Postgres: %v", err)
	}
	defer conn.Close(ctx)
	return newDatabase(tb, conn, "mailslot_e_", "")
}

// newDatabase creates a database named prefix+random with the given
// CREATE DATABASE options, drops it at cleanup, and returns its URL.
func newDatabase(tb testing.TB, conn *pgx.Conn, prefix, options string) string {
	tb.Helper()
	admin := AdminURL(tb)
	name := prefix + randomHex(6)
	if _, err := conn.Exec(context.Background(), fmt.Sprintf(`CREATE DATABASE %s%s`, name, options)); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("connect to drop test database: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	return WithDatabase(tb, admin, name)
}

// KeptURL returns the URL of the database name, created if it does not
// exist and migrated to the embedded schema, and not dropped when the test
// ends: a benchmark whose data takes minutes to load keeps it between runs.
func KeptURL(tb testing.TB, name string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	admin := AdminURL(tb)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to test Postgres: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		tb.Fatalf("look up kept database %s: %v", name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			tb.Fatalf("create kept database %s: %v", name, err)
		}
	}
	u := WithDatabase(tb, admin, name)
	mc, err := pgx.Connect(ctx, u)
	if err != nil {
		tb.Fatalf("connect to kept database %s: %v", name, err)
	}
	defer mc.Close(ctx)
	if _, err := pgschema.Migrate(ctx, mc); err != nil {
		tb.Fatalf("migrate kept database %s: %v", name, err)
	}
	return u
}

// New returns a pool on a fresh migrated database with an empty
// search_path.
func New(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return Pool(tb, NewURL(tb))
}

// Pool opens a pool on dbURL with an empty search_path, closed at cleanup.
func Pool(tb testing.TB, dbURL string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		tb.Fatalf("parse database URL: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = ""
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// WithDatabase returns dbURL pointed at another database, with an empty
// search_path requested through the URL's options.
func WithDatabase(tb testing.TB, dbURL, name string) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("parse database URL: %v", err)
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("search_path", "")
	u.RawQuery = q.Encode()
	return u.String()
}

// template returns the name of a database migrated to the embedded schema,
// creating it under an advisory lock if no test binary has yet.
func template(ctx context.Context, conn *pgx.Conn, admin string) (string, error) {
	ms, err := pgschema.Migrations()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range ms {
		h.Write([]byte(m.SQL))
	}
	name := "mailslot_tpl_" + hex.EncodeToString(h.Sum(nil))[:12]
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7400)`); err != nil {
		return "", err
	}
	defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock(7400)`) }()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	mc, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return "", err
	}
	_, err = pgschema.Migrate(ctx, mc)
	mc.Close(ctx)
	if err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s WITH IS_TEMPLATE true`, name)); err != nil {
		return "", err
	}
	return name, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
