package pgtest

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// HeldCommit begins transactions on Pool whose Commit waits until Release
// is closed, after closing Reached: a test can hold a transaction open once
// its statements ran, and start another one against it. It serves one
// transaction.
type HeldCommit struct {
	Pool             *pgxpool.Pool
	Reached, Release chan struct{}
}

// NewHeldCommit holds the next transaction begun on pool at its commit.
func NewHeldCommit(pool *pgxpool.Pool) HeldCommit {
	return HeldCommit{Pool: pool, Reached: make(chan struct{}), Release: make(chan struct{})}
}

type heldTx struct {
	pgx.Tx
	h HeldCommit
}

// Begin begins a transaction whose Commit is held.
func (h HeldCommit) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := h.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return heldTx{Tx: tx, h: h}, nil
}

func (t heldTx) Commit(ctx context.Context) error {
	close(t.h.Reached)
	<-t.h.Release
	return t.Tx.Commit(ctx)
}
