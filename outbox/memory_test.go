package outbox_test

import (
	"context"
	"database/sql"
	"testing"
)

// TestReaderPageCache holds the readers' SQLite page cache to 512 KiB:
// SQLite allocates it outside the Go heap and outside GOMEMLIMIT, once per
// connection, so it counts against the edge's 128 MiB whatever the Go
// runtime does (docs/ARCHITECTURE.md, "Memory").
func TestReaderPageCache(t *testing.T) {
	o := open(t, t.TempDir())
	ctx := context.Background()
	db := o.DB()
	db.SetMaxIdleConns(4)
	// Hold several reader connections at once, so that each one's pragma
	// is read, not only the first's.
	conns := make([]*sql.Conn, 0, 4)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range 4 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("reader connection %d: %v", i, err)
		}
		conns = append(conns, c)
		var kib int
		if err := c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&kib); err != nil {
			t.Fatalf("reader connection %d: read cache_size: %v", i, err)
		}
		if kib != -512 {
			t.Errorf("reader connection %d: cache_size = %d, want -512 (512 KiB)", i, kib)
		}
	}
}
