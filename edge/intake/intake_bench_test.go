package intake_test

import (
	"testing"

	"github.com/mailslot/mailslot/edge/intake"
)

// BenchmarkDecodeLead decodes and validates the sign-up that
// cmd/mailslotbench posts, as JSON (UTM nested) and as a form (UTM
// flattened).
func BenchmarkDecodeLead(b *testing.B) {
	for _, c := range []struct {
		name   string
		format intake.Format
		body   string
	}{
		{"json", intake.FormatJSON, `{"email":"bench+000000000001@example.com","property":"bench",` +
			`"consent":"express","policy_version":"2026-01","source":"footer","name":"Bench User",` +
			`"page":"https://example.com/pricing","utm":{"source":"newsletter","medium":"email","campaign":"launch"}}`},
		{"form", intake.FormatForm, `email=bench%2B000000000001%40example.com&property=bench` +
			`&consent=express&policy_version=2026-01&source=footer&name=Bench+User` +
			`&page=https%3A%2F%2Fexample.com%2Fpricing&utm_source=newsletter&utm_medium=email&utm_campaign=launch`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req, err := intake.DecodeLead(c.format, body)
				if err != nil || req.Email == "" {
					b.Fatalf("decode: %v", err)
				}
			}
		})
	}
}
