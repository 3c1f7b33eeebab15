package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/webhook"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// BenchmarkDeliver measures delivery throughput to a local receiver that
// answers 204 at once: claim, sign, POST and record, b.N events of
// distinct leads (so that per-lead order does not serialize them).
func BenchmarkDeliver(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	rc := webhooktest.New(b, nil)
	addSub(b, pool, rc.URL, "", webhook.Types...)
	rows, err := pool.Query(ctx, `
INSERT INTO mailslot.leads (property, email, email_hmac, consent_basis, first_seen_at, last_seen_at)
SELECT 'bench.example', 'lead' || g || '@example.com', sha256(('lead' || g)::bytea), 'pending', now(), now()
FROM generate_series(1, $1) g RETURNING public_id`, b.N)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]webhook.Event, len(ids))
	for i, id := range ids {
		evs[i] = webhook.Event{Type: webhook.LeadCreated, PublicID: id}
	}
	for len(evs) > 0 {
		n := min(len(evs), 5000)
		emit(b, pool, evs[:n]...)
		evs = evs[n:]
	}
	b.ResetTimer()
	start := time.Now()
	d := startDeliverer(b, webhook.Options{DB: pool, Timeout: 10 * time.Second, PollInterval: 10 * time.Millisecond})
	d.until(b, "every event delivered", func() bool { return d.d.Status().Delivered >= int64(b.N) })
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(load1(), "load1")
	if got := len(rc.Accepted()); got != b.N {
		b.Fatalf("receiver accepted %d, want %d", got, b.N)
	}
}
