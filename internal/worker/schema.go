package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mailslot/mailslot/pgschema"
)

// SchemaRecheck is how long a current schema is trusted before it is read
// again: a worker started before a migration notices it within this time.
const SchemaRecheck = 5 * time.Minute

// SchemaGate keeps a worker from writing to a Postgres whose schema is
// older than this binary's (pgschema.Required). It reads the version when
// a check is due: at first, after a failed round (Recheck), while the
// schema is behind, and every SchemaRecheck.
type SchemaGate struct {
	q pgschema.Querier

	checked time.Time // owned by the worker's loop

	mu      sync.Mutex
	version int
}

// NewSchemaGate checks through q.
func NewSchemaGate(q pgschema.Querier) *SchemaGate { return &SchemaGate{q: q} }

// Due reports whether the next round must check first.
func (g *SchemaGate) Due() bool {
	return g.checked.IsZero() || time.Since(g.checked) > SchemaRecheck
}

// Recheck makes the next round check first (a failed round may mean a
// restored or replaced database).
func (g *SchemaGate) Recheck() { g.checked = time.Time{} }

// Check reads the schema version. err is a failure to read it; behind,
// when not empty, says (with the advice to migrate) that the schema is
// older than this binary needs. Only a current schema stops Due until the
// next SchemaRecheck.
func (g *SchemaGate) Check(ctx context.Context) (behind string, err error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := pgschema.Version(cctx, g.q)
	if err != nil {
		return "", fmt.Errorf("read the schema version: %w", err)
	}
	g.mu.Lock()
	g.version = v
	g.mu.Unlock()
	if need := pgschema.Required(); v < need {
		return fmt.Sprintf("Postgres schema is at version %d, this edge needs %d: run mailslotctl migrate", v, need), nil
	}
	g.checked = time.Now()
	return "", nil
}

// Version is the version last read (0 before the first read).
func (g *SchemaGate) Version() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.version
}
