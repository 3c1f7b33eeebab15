package outbox_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot/internal/testsync"
	"github.com/mailslot/mailslot/outbox"
)

// TestBackgroundCheckpoint checks that committed pages reach the database
// file soon after their commit, long before the writer's own checkpoint at
// 1000 WAL pages, and that without the background checkpoint they stay in
// the WAL.
func TestBackgroundCheckpoint(t *testing.T) {
	for _, c := range []struct {
		name   string
		every  time.Duration
		copied bool
		wait   time.Duration
	}{
		{name: "on", every: 5 * time.Millisecond, copied: true, wait: 5 * time.Second},
		{name: "off", copied: false, wait: 300 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := open(t, dir, func(o *outbox.Options) { o.CheckpointEvery = c.every })
			path := filepath.Join(dir, outbox.FileName)
			before := fileSize(t, path)
			// 20 commits of 2 KB rows: some 40 WAL pages, far below the
			// writer's checkpoint threshold.
			for range 20 {
				mustSubmit(t, out, sub("", strings.Repeat("x", 2000)))
			}
			// For "off", the whole wait passing without growth is the test.
			grown, _ := testsync.Within(c.wait, func() (bool, string) { return fileSize(t, path) >= before+10*4096, "" })
			if grown != c.copied {
				t.Errorf("database file grew from %d to %d bytes in %s; want copied into it: %v",
					before, fileSize(t, path), c.wait, c.copied)
			}
			if n := count(t, out, "SELECT count(*) FROM outbox"); n != 20 {
				t.Errorf("%d rows, want 20", n)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
