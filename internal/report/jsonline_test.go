package report

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// encodingJSON is what encoding/json writes for v without HTML escaping:
// the line appendJSONLine must reproduce byte for byte.
func encodingJSON(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestJSONLineIsWhatEncodingJSONWrites(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	whole := time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)
	leads := []ExportedLead{
		{Email: "ann@example.com", Property: "shop.example", ConsentStatus: "express", ConsentBasis: "express",
			ConfirmedAt: &at, ExpressAt: &at, FirstSeenAt: at, LastSeenAt: whole},
		{Email: "zoë@exämple.com", Name: "Zoë \"Z\" O'Brien\\\n\t\r\x01\x1f", Property: "café.example",
			FirstSource: "<script>&", FirstPage: "/a?b=c&d=<e>", LastCampaign: "\u2028\u2029 line", LastPage: "bad \xff utf-8",
			ImpliedAt: &whole, WithdrawnAt: &at, FirstSeenAt: whole, LastSeenAt: at},
		{},
	}
	for _, l := range leads {
		want := encodingJSON(t, &l)
		if got := appendJSONLine(nil, &l); !bytes.Equal(got, want) {
			t.Errorf("appendJSONLine:\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\x00\x07\x1f\x7f", "é ☕ 𝄞", "\u2028\u2029", "\xff\xfe", "a\xc3", "\b\f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := bytes.TrimSuffix(encodingJSON(t, s), []byte("\n"))
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}
