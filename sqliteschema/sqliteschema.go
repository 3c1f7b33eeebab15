// Package sqliteschema holds the edge outbox's SQLite schema as numbered SQL
// files and applies the ones a database lacks when the outbox opens.
//
// The edge owns its own file, so unlike Postgres there is no operator step:
// an edge that starts on an older file upgrades it in place before accepting.
package sqliteschema

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"strconv"

	"github.com/mailslot/mailslot/internal/migration"
)

//go:embed *.sql
var files embed.FS

// Migration is one numbered schema step.
type Migration = migration.Migration

// Migrations returns every embedded migration in version order.
func Migrations() ([]Migration, error) {
	return migration.Read(files)
}

// Migrate applies the migrations db lacks, each in its own transaction
// together with the user_version bump, and returns the resulting version. A
// file newer than this binary is refused rather than written to.
func Migrate(ctx context.Context, db *sql.DB) (int, error) {
	ms, err := Migrations()
	if err != nil {
		return 0, err
	}
	var current int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if current > len(ms) {
		return current, fmt.Errorf("outbox schema version %d is newer than this binary knows (%d)", current, len(ms))
	}
	for _, m := range ms[current:] {
		if err := apply(ctx, db, m); err != nil {
			return current, err
		}
		current = m.Version
	}
	return current, nil
}

func apply(ctx context.Context, db *sql.DB, m Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration %s: %w", m.Name, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("apply migration %s: %w", m.Name, err)
	}
	// PRAGMA does not take bind parameters; the version is an integer we own.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(m.Version)); err != nil {
		return fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration %s: %w", m.Name, err)
	}
	return nil
}
