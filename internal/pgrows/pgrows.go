// Package pgrows reads the rows of one query into values, with the error
// naming what was being read: the listing every job table (image jobs,
// mail jobs) and report offers.
package pgrows

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Collect runs sql and scans every row with scan; errors read
// "<what>: <cause>".
func Collect[T any](ctx context.Context, db Querier, what string, scan func(pgx.CollectableRow) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// Into scans a row into a T through the pointers targets gives for it.
func Into[T any](targets func(*T) []any) func(pgx.CollectableRow) (T, error) {
	return func(r pgx.CollectableRow) (T, error) {
		var v T
		err := r.Scan(targets(&v)...)
		return v, err
	}
}
