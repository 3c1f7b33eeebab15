package outbox_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// benchPayload is the size and shape of a stored sign-up (lead plus consent
// record), so that the benchmark writes as many WAL bytes per row as the
// edge does.
var benchPayload = []byte(`{"email":"bench+000000000001@example.com","property":"bench","consent":"express",` +
	`"policy_version":"2026-01","source":"footer","name":"Bench User","page":"https://example.com/pricing",` +
	`"utm":{"source":"newsletter","medium":"email","campaign":"launch"},"consent_record":{"property":"bench",` +
	`"policy_version":"2026-01","status":"express","source":"footer","recorded_at":"2026-01-01T00:00:00Z",` +
	`"ip_hmac":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}}`)

// BenchmarkSubmit stores one-row submissions from 32×GOMAXPROCS concurrent
// goroutines (about what 64 HTTP workers put on the edge on two cores),
// with group commit on and off. Every Submit returns after its fsync, so
// "submits/s" is durable rows per second; with group commit off it is the
// disk's fsync rate.
func BenchmarkSubmit(b *testing.B) {
	for _, c := range []struct {
		name  string
		group bool
	}{{"group=on", true}, {"group=off", false}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			out, err := outbox.Open(ctx, outbox.Options{Dir: b.TempDir(), NodeID: "bench", GroupCommit: c.group})
			if err != nil {
				b.Fatal(err)
			}
			defer out.Close()
			hmac := make([]byte, 32)
			var seq atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := "bench-" + strconv.FormatInt(seq.Add(1), 10)
					_, err := out.Submit(ctx, outbox.Submission{
						Records: []outbox.Record{{
							ID: id, Kind: mailslot.KindLead, ReceivedAt: time.Now(),
							Payload: benchPayload, EmailHMAC: hmac, IPHMAC: hmac,
						}},
						Response: id,
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "submits/s")
		})
	}
}
