package outbox

import (
	"database/sql"
	"time"
)

// checkpoint copies committed WAL frames into the database file from its
// own connection, at most once per every, while the writer commits.
//
// SQLite checkpoints inside the commit that takes the WAL past 1000 pages
// (wal_autocheckpoint): that commit copies every page written since the
// last checkpoint and fsyncs the database file before its submissions are
// answered, and every submission queued behind it waits as well; those
// stalls made the edge's p99 about 1.55× its p90. A PASSIVE checkpoint on
// another connection does the copying beside the writer, which goes on
// committing. The WAL can start over from its beginning only once all of
// it has been copied, so the writer's own checkpoint still runs at 1000
// pages, and it now finds only the last few milliseconds' frames to copy.
//
// Every pass fsyncs the database file, which is why passes are spaced
// rather than run after each commit; an idle outbox runs none.
func (o *Outbox) checkpoint(ck *sql.DB, every time.Duration) {
	defer close(o.ckDone)
	wait := time.NewTimer(every)
	defer wait.Stop()
	var lastErr string
	for {
		select {
		case <-o.done:
			return
		case <-o.wrote:
		}
		wait.Reset(every)
		select {
		case <-o.done:
			return
		case <-wait.C:
		}
		// PASSIVE never waits for a lock: while Litestream or an operator
		// holds one, the pass copies what it can and reports busy.
		var busy, frames, copied int
		err := ck.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		switch {
		case err == nil:
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			o.log.Warn("outbox background checkpoint failed; the writer's own checkpoints go on", "err", err)
		}
	}
}
