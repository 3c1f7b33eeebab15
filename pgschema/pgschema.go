// Package pgschema holds the canonical Postgres schema as numbered SQL
// migrations and applies them. Only the operator CLI (mailslotctl migrate)
// calls Migrate; edges call Version to refuse syncing into a schema that is
// behind the one they were built for.
//
// Each migration runs in its own transaction together with its row in
// mailslot.schema_version, under a transaction-level advisory lock, so two
// operators migrating at once apply each step exactly once.
package pgschema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailslot/mailslot/internal/migration"
)

//go:embed [0-9]*.sql grants.sql
var files embed.FS

// lockKey is the advisory lock that serializes migrators ("mailslot" in
// ASCII, as a number).
const lockKey int64 = 0x6d61696c736c6f74

// Migration is one numbered schema step.
type Migration = migration.Migration

// Migrations returns every embedded migration in version order.
func Migrations() ([]Migration, error) {
	return migration.Read(files)
}

// Required is the schema version this binary was built for.
func Required() int {
	ms, err := Migrations()
	if err != nil {
		panic(err) // the embedded files are fixed at build time; tests catch this
	}
	return len(ms)
}

// Querier is what Version needs: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Version reads the applied schema version; 0 means no schema at all.
func Version(ctx context.Context, q Querier) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM mailslot.schema_version`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return 0, nil // undefined table or schema: nothing migrated yet
	}
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// Applied is one row of the schema_version table.
type Applied struct {
	Version int
	Name    string
	At      string
}

// Result says what a Migrate call did.
type Result struct {
	From, To int
	Applied  []string
}

// Migrate applies the migrations the database lacks, then the grants for
// the edge role. It is safe to run twice and from two places at once.
func Migrate(ctx context.Context, conn *pgx.Conn) (Result, error) {
	ms, err := Migrations()
	if err != nil {
		return Result{}, err
	}
	// IF NOT EXISTS is not safe against a concurrent creator (both see no
	// schema, one fails on the catalog's unique index), so the bootstrap
	// takes the migrators' lock too.
	if err := locked(ctx, conn, `
		CREATE SCHEMA IF NOT EXISTS mailslot;
		CREATE TABLE IF NOT EXISTS mailslot.schema_version (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return Result{}, fmt.Errorf("create schema_version table: %w", err)
	}
	from, err := Version(ctx, conn)
	if err != nil {
		return Result{}, err
	}
	res := Result{From: from, To: from}
	if from > len(ms) {
		return res, fmt.Errorf("database schema version %d is newer than this mailslotctl knows (%d): use a newer mailslotctl", from, len(ms))
	}
	for _, m := range ms {
		done, err := applyOne(ctx, conn, m)
		if err != nil {
			return res, err
		}
		if done {
			res.Applied = append(res.Applied, m.Name)
		}
		res.To = max(res.To, m.Version)
	}
	grants, err := fs.ReadFile(files, "grants.sql")
	if err != nil {
		return res, fmt.Errorf("read grants: %w", err)
	}
	// Two GRANTs on one object at once fail with "tuple concurrently
	// updated": serialize them like the migrations.
	if err := locked(ctx, conn, string(grants)); err != nil {
		return res, fmt.Errorf("apply edge role grants: %w", err)
	}
	return res, nil
}

// locked runs sql in one transaction holding the migrators' lock.
func locked(ctx context.Context, conn *pgx.Conn, sql string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// applyOne applies m unless it is already recorded, re-checking under the
// lock so that a concurrent migrator's work is seen.
func applyOne(ctx context.Context, conn *pgx.Conn, m Migration) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin migration %s: %w", m.Name, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
		return false, fmt.Errorf("lock for migration %s: %w", m.Name, err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailslot.schema_version WHERE version = $1)`, m.Version).Scan(&exists); err != nil {
		return false, fmt.Errorf("check migration %s: %w", m.Name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("apply migration %s: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mailslot.schema_version (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
		return false, fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit migration %s: %w", m.Name, err)
	}
	return true, nil
}

// History lists the applied migrations, oldest first.
func History(ctx context.Context, conn *pgx.Conn) ([]Applied, error) {
	rows, err := conn.Query(ctx, `SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM mailslot.schema_version ORDER BY version`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
			return nil, nil
		}
		return nil, fmt.Errorf("read schema history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
		var a Applied
		err := r.Scan(&a.Version, &a.Name, &a.At)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read schema history: %w", err)
	}
	return out, nil
}
