package drain

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pgtest"
	"github.com/mailslot/mailslot/internal/safedial"
	"github.com/mailslot/mailslot/outbox"
	"github.com/mailslot/mailslot/sync/webhook"
)

// BenchmarkApplySignUps applies 1000-row batches of new sign-ups to one
// database, with a webhook subscription that wants every event switched
// on for every other batch and off (disabled: no subscriber, nothing is
// written) for the rest. Taking turns batch by batch, on the same tables,
// puts both under the same load from the rest of the machine, so the two
// rates (and their ratio, subscribed over unsubscribed) compare within one
// run: the drain rate with a subscription must stay within noise of the
// rate without.
func BenchmarkApplySignUps(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.New(b)
	c, err := webhook.Add(ctx, pool, webhook.NewSubscription{
		URL: "http://127.0.0.1:9/hooks", Events: webhook.Types, Policy: safedial.Policy{AllowPrivate: true}})
	if err != nil {
		b.Fatal(err)
	}
	subscribe := func(on bool) {
		if _, err := pool.Exec(ctx, `UPDATE mailslot.webhook_subscriptions
			SET disabled_at = CASE WHEN $2 THEN NULL ELSE now() END, disabled_reason = CASE WHEN $2 THEN NULL ELSE 'bench' END
			WHERE id = $1`, c.ID, on); err != nil {
			b.Fatal(err)
		}
	}
	app := &Applier{NodeID: testNode, Region: "bench"}
	const batch = 1000
	var seq int64
	apply := func() time.Duration {
		rows := make([]outbox.Row, batch)
		for i := range rows {
			seq++
			rows[i] = lead(fmt.Sprintf("bench+%d@example.com", seq), sub{at: i, consent: mailslot.ConsentExpress,
				name: "Bench User", utm: "newsletter", page: "https://example.com/pricing"})
			rows[i].Seq = seq
		}
		d, _ := decode(rows)
		start := time.Now()
		if _, err := app.Apply(ctx, pool, d); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var without, with time.Duration
	n := 0
	for b.Loop() {
		// Alternate which goes first, so that neither always follows the
		// other's checkpoint or autovacuum.
		for k := range 2 {
			on := (n+k)%2 == 0
			subscribe(on)
			if on {
				with += apply()
			} else {
				without += apply()
			}
		}
		n++
	}
	rate := func(d time.Duration) float64 { return float64(n*batch) / d.Seconds() }
	b.ReportMetric(rate(without), "rows/s-unsubscribed")
	b.ReportMetric(rate(with), "rows/s-subscribed")
	b.ReportMetric(rate(with)/rate(without), "ratio")
}
