package edge_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/edge"
	"github.com/mailslot/mailslot/internal/edgetest"
	"github.com/mailslot/mailslot/internal/pgtest"
)

// openPools counts the pgx pools alive in this process: each runs one
// goroutine, started by pgxpool.NewWithConfig, until it is closed. The
// count includes goroutines not yet scheduled.
func openPools() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "created by github.com/jackc/pgx/v5/pgxpool.NewWithConfig")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitPools waits, boundedly, for the count of open pools to reach want.
func waitPools(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for openPools() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d pgx pool(s) still open, want %d", what, openPools(), want)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}

// Whatever Open opened is closed when Open fails halfway, and by Close on
// a node that never ran: the drain, tombstone, image dispatcher, image
// API, webhook, mail and challenge-settings pools, which used to be closed
// only inside their workers' Run.
func TestOpenAndCloseReleasePools(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	env := map[string]string{
		"DATABASE_URL": dbURL, "MAILSLOT_ADDR": "127.0.0.1:0", "MAILSLOT_PRIVATE_ADDR": "127.0.0.1:0",
		"MAILSLOT_IMAGE_PROVIDER": "replicate", "MAILSLOT_IMAGE_REPLICATE_TOKEN": "r8_test",
		"MAILSLOT_IMAGE_FACES_MODEL": "owner/faces", "MAILSLOT_IMAGE_CAPTION_MODEL": "owner/caption",
		"MAILSLOT_IMAGE_REPLICATE_URL": "https://replicate.invalid",
		"MAILSLOT_SMTP_URL":            "smtp://127.0.0.1:1?starttls=off",
	}
	log := slog.New(slog.DiscardHandler)
	// Earlier tests' nodes close their pools as they stop; start from none.
	waitPools(t, 0, "before the test")
	before := 0

	t.Run("open fails halfway", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		e := map[string]string{"MAILSLOT_PRIVATE_ADDR": busy.Addr().String()}
		for k, v := range env {
			if _, ok := e[k]; !ok {
				e[k] = v
			}
		}
		if _, err := edge.Open(context.Background(), edgetest.Config(t, e), log); err == nil {
			t.Fatal("Open succeeded on a private address in use")
		}
		waitPools(t, before, "after Open failed at the private listener")
	})

	t.Run("close without run", func(t *testing.T) {
		n, err := edge.Open(context.Background(), edgetest.Config(t, env), log)
		if err != nil {
			t.Fatal(err)
		}
		if got := openPools(); got != before+8 {
			t.Errorf("an open node holds %d pools, want 8 (drain, tombstones, report rollups, image dispatcher, image API, webhooks, mail, challenge settings)", got-before)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		waitPools(t, before, "after Close of a node that never ran")
	})
}
