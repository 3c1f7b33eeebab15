package drain

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

// BenchmarkApplySignUps applies 1000-row batches of new sign-ups to
// Postgres, without a webhook subscription and with one that wants every
// event: the drain rate must stay within noise when nobody subscribes, and
// shows the cost of writing events and deliveries when someone does.
func BenchmarkApplySignUps(b *testing.B) {
	for _, subscribed := range []bool{false, true} {
		b.Run(fmt.Sprintf("subscribed=%v", subscribed), func(b *testing.B) {
			pool := pgtest.New(b)
			if subscribed {
				if _, err := webhook.Add(context.Background(), pool, webhook.NewSubscription{
					URL: "http://127.0.0.1:9/hooks", Events: webhook.Types, Policy: safedial.Policy{AllowPrivate: true}}); err != nil {
					b.Fatal(err)
				}
			}
			app := &Applier{NodeID: testNode, Region: "bench"}
			const batch = 1000
			var seq int64
			b.ResetTimer()
			for b.Loop() {
				rows := make([]outbox.Row, batch)
				for i := range rows {
					seq++
					rows[i] = lead(fmt.Sprintf("bench+%d@example.com", seq), sub{at: i, consent: mailslot.ConsentExpress,
						name: "Bench User", utm: "newsletter", page: "https://example.com/pricing"})
					rows[i].Seq = seq
				}
				d, _ := decode(rows)
				if _, err := app.Apply(context.Background(), pool, d); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
