// Package pgpool opens the edge's small Postgres pools. They connect
// lazily, so an edge starts and accepts while Postgres is down, and they
// bound what one edge can hold open on the shared cluster.
package pgpool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Open prepares a pool of at most maxConns connections without connecting.
// name becomes application_name (pg_stat_activity shows which worker a
// connection is), and statementTimeout, when positive, bounds every
// statement.
func Open(dbURL, name string, maxConns int32, statementTimeout time.Duration) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// pgx's message can quote the URL; say only what is wrong.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	cfg.MaxConns = max(1, maxConns)
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = time.Minute
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 10*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	if statementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(statementTimeout.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("prepare Postgres pool: %w", err)
	}
	return pool, nil
}
