package edge

import (
	"context"

	"github.com/mailslot/mailslot/internal/metrics"
	"github.com/mailslot/mailslot/sync/drain"
	"github.com/mailslot/mailslot/sync/erasure"
	"github.com/mailslot/mailslot/sync/images"
)

// outboxSamples reports the outbox's depth, age and size at scrape time.
func (n *Node) outboxSamples(ctx context.Context) ([]metrics.Sample, error) {
	st, err := n.Outbox.Stats(ctx)
	if err != nil {
		return nil, err
	}
	age := 0.0
	if st.OldestPendingAt != nil {
		age = n.now().Sub(*st.OldestPendingAt).Seconds()
	}
	return []metrics.Sample{
		{Name: "outbox_pending_rows", Help: "Rows waiting to be synced to Postgres.", Value: float64(st.Pending)},
		{Name: "outbox_oldest_pending_seconds", Help: "Age of the oldest row waiting to be synced.", Value: age},
		{Name: "outbox_quarantined_rows", Help: "Rows set aside because Postgres refused their content.", Value: float64(st.Quarantined)},
		{Name: "outbox_retained_rows", Help: "Synced rows kept for reconciliation.", Value: float64(st.Synced)},
		{Name: "outbox_file_bytes", Help: "Size of the outbox database and its WAL.", Value: float64(st.FileBytes)},
		{Name: "outbox_last_seq", Help: "Highest sequence number assigned.", Value: float64(st.LastSeq)},
	}, nil
}

// syncSamples reports the sync worker's and the tombstone puller's state.
func syncSamples(w *drain.Worker, p *erasure.Puller) metrics.Source {
	return func(ctx context.Context) ([]metrics.Sample, error) {
		ds, err := w.Status(ctx)
		if err != nil {
			return nil, err
		}
		ts, err := p.Status(ctx)
		if err != nil {
			return nil, err
		}
		reachable, behind := 0.0, 0.0
		if ds.PostgresReachable {
			reachable = 1
		}
		if ds.SchemaVersion < ds.SchemaRequired {
			behind = 1
		}
		return []metrics.Sample{
			{Name: "sync_rows_total", Help: "Rows applied to Postgres by this process.", Value: float64(ds.RowsSynced), Counter: true},
			{Name: "sync_rows_replayed_total", Help: "Rows found already applied (replays after a crash).", Value: float64(ds.RowsReplayed), Counter: true},
			{Name: "sync_batches_total", Help: "Sync batches committed by this process.", Value: float64(ds.Batches), Counter: true},
			{Name: "sync_errors_total", Help: "Sync attempts that failed and were retried.", Value: float64(ds.Errors), Counter: true},
			{Name: "sync_lag_seconds", Help: "Age of the oldest row not yet in Postgres.", Value: ds.OldestPendingAgeSeconds},
			{Name: "sync_postgres_reachable", Help: "1 when the last contact with Postgres succeeded.", Value: reachable},
			{Name: "sync_schema_behind", Help: "1 when Postgres' schema is older than this edge needs.", Value: behind},
			{Name: "erasures_applied_total", Help: "Tombstones applied to this outbox by this process.", Value: float64(ts.Applied), Counter: true},
			{Name: "erasure_rows_scrubbed_total", Help: "Outbox rows scrubbed by tombstones by this process.", Value: float64(ts.RowsErased), Counter: true},
			{Name: "erasure_cursor", Help: "Id of the last tombstone applied here.", Value: float64(ts.Cursor)},
		}, nil
	}
}

// imageSamples reports the image queue and spend. The counts come from
// Postgres, so every edge reports the same fleet-wide numbers.
func imageSamples(d *images.Dispatcher) metrics.Source {
	return func(ctx context.Context) ([]metrics.Sample, error) {
		st, err := d.Status(ctx)
		if err != nil {
			return nil, err
		}
		exhausted := 0.0
		if st.BudgetExhausted {
			exhausted = 1
		}
		return []metrics.Sample{
			{Name: "image_jobs_queued", Help: "Image jobs waiting to run.", Value: float64(st.QueueDepth)},
			{Name: "image_jobs_in_flight", Help: "Image jobs running at a provider.", Value: float64(st.InFlight)},
			{Name: "image_jobs_failed", Help: "Image jobs waiting to retry.", Value: float64(st.Failed)},
			{Name: "image_jobs_dead", Help: "Image jobs out of attempts.", Value: float64(st.Dead)},
			{Name: "image_spend_month_usd", Help: "Provider spend this month (UTC).", Value: st.MonthToDateUSD},
			{Name: "image_budget_exhausted", Help: "1 when the monthly budget stops dispatching.", Value: exhausted},
		}, nil
	}
}

// imageStatus is the image part of the node status, nil when off.
func (n *Node) imageStatus(ctx context.Context) *images.Status {
	if n.Images == nil {
		return nil
	}
	st, err := n.Images.Status(ctx)
	if err != nil {
		n.log.Warn("read image status", "err", err)
		return nil
	}
	return &st
}
