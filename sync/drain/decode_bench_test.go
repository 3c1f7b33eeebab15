package drain

import (
	"fmt"
	"testing"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/outbox"
)

// BenchmarkDecode measures the edge's CPU for decoding one 1000-row batch
// of sign-ups shaped like the drain benchmark's.
func BenchmarkDecode(b *testing.B) {
	rows := make([]outbox.Row, 1000)
	for i := range rows {
		rows[i] = lead(fmt.Sprintf("bench+%d@example.com", i), sub{at: i, consent: mailslot.ConsentExpress, name: "Bench User",
			utm: "newsletter", page: "https://example.com/pricing"})
		rows[i].Seq = int64(i + 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, poison := decode(rows); len(poison) > 0 {
			b.Fatal(poison[0])
		}
	}
}
