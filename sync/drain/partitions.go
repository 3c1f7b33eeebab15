package drain

import (
	"context"
	"time"

	"github.com/mailslot/mailslot/internal/logging"
	"github.com/mailslot/mailslot/internal/report"
)

// EventMonthsAhead is how many months after the current one keep their
// mailslot.events partition ready. A month nobody created still takes
// its rows (the default partition holds them until the month is made),
// but then the purge cannot drop it whole, so the sync and `mailslotctl
// migrate` keep a quarter ahead.
const EventMonthsAhead = 3

// ensureEventPartitions runs at every schema check (every few minutes):
// when nothing is missing it is one catalog look-up per month under an
// advisory lock. A failure is logged and retried at the next check; it
// never stops the sync, since the default partition takes the rows.
func (w *Worker) ensureEventPartitions(ctx context.Context) {
	n, err := report.EnsureEventPartitions(ctx, w.pool, time.Now().UTC(), EventMonthsAhead+1)
	if err != nil {
		w.log.Warn("ensure event partitions ahead", logging.KeyErr, err)
		return
	}
	if n > 0 {
		w.log.Info("created event partitions", "partitions", n)
	}
}
