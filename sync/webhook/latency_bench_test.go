package webhook_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/sync/webhook"
	"github.com/mailslot/mailslot/sync/webhook/webhooktest"
)

// latencyRate is the change rate BenchmarkChangeToDelivered holds.
const latencyRate = 200 // events/s

// BenchmarkChangeToDelivered measures change → delivered latency at a
// steady 200 events/s: every 20 ms the lead.created events due by then
// are written in one transaction and the deliverer is woken (as the sync
// does after every commit), and the receiver notes when each event
// arrives. The latency of an event runs from the tick that wrote it
// (before its transaction starts) to its arrival at the receiver, so it
// includes the commit, the fan-out, the claim, the signing and the POST;
// an edge's sync interval (200 ms by default) comes on top. b.N is the number of events (-benchtime 2000x is
// ten seconds). load1 is the machine's one-minute load average at the end.
func BenchmarkChangeToDelivered(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	var (
		mu      sync.Mutex
		arrived = map[string]time.Time{}
	)
	rc := webhooktest.New(b, func(r webhooktest.Request) int {
		now := time.Now()
		mu.Lock()
		if _, ok := arrived[r.LeadID]; !ok {
			arrived[r.LeadID] = now
		}
		mu.Unlock()
		return 204
	})
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
	d := startDeliverer(b, webhook.Options{DB: pool, Timeout: 10 * time.Second})
	changed := make([]time.Time, len(ids))
	b.ResetTimer()
	// Every 20 ms, the events due by then (at latencyRate) are written in
	// one transaction, as the sync writes a batch: one transaction per
	// event could not keep up with 200/s on a loaded machine, and would
	// measure the emitter instead.
	tick := time.NewTicker(20 * time.Millisecond)
	start := time.Now()
	for next := 0; next < len(ids); {
		now := <-tick.C
		due := min(len(ids), int(time.Since(start).Seconds()*latencyRate)+1)
		if due <= next {
			continue
		}
		evs := make([]webhook.Event, 0, due-next)
		for i := next; i < due; i++ {
			changed[i] = now
			evs = append(evs, webhook.Event{Type: webhook.LeadCreated, PublicID: ids[i]})
		}
		emit(b, pool, evs...)
		d.d.Wake()
		next = due
	}
	tick.Stop()
	emitted := time.Since(start)
	d.until(b, "every event delivered", func() bool { return d.d.Status().Delivered >= int64(b.N) })
	b.StopTimer()

	mu.Lock()
	lat := make([]time.Duration, len(ids))
	for i, id := range ids {
		at, ok := arrived[id.String()]
		if !ok {
			mu.Unlock()
			b.Fatalf("event for lead %d never arrived", i)
		}
		lat[i] = at.Sub(changed[i])
	}
	mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(ids))/emitted.Seconds(), "events/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(load1(), "load1")
	b.ReportMetric(0, "ns/op")
}

// load1 is the one-minute load average (0 where /proc is not Linux's).
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		return 0
	}
	return f
}
