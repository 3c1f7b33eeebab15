package addrscrub_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mailslot/mailslot/internal/addrscrub"
	"github.com/mailslot/mailslot/internal/addrscrub/addrscrubtest"
)

func TestRedact(t *testing.T) {
	m, err := addrscrub.New(addrscrubtest.Address)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range addrscrubtest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, found := m.Redact(c.In)
			if got != c.Want || found != (c.In != c.Want) {
				t.Errorf("Redact(%q) = %q, %v; want %q", c.In, got, found, c.Want)
			}
		})
	}
}

func TestRedactJSON(t *testing.T) {
	m, err := addrscrub.New(addrscrubtest.Address)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range addrscrubtest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			doc, _ := json.Marshal(map[string]any{"type": "click", "seats": json.Number("12345678901234567890"),
				"props": map[string]any{"deep": []any{c.In, 1.5, nil, true}, c.In: "key"}})
			out, found, err := m.RedactJSON(doc)
			if err != nil {
				t.Fatal(err)
			}
			if found != (c.In != c.Want) {
				t.Errorf("found = %v for %q", found, c.In)
			}
			var got map[string]any
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.UseNumber()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			props := got["props"].(map[string]any)
			if v := props["deep"].([]any)[0]; v != c.Want {
				t.Errorf("value became %q, want %q", v, c.Want)
			}
			if props[c.Want] != "key" {
				t.Errorf("key did not become %q: %s", c.Want, out)
			}
			if got["seats"] != json.Number("12345678901234567890") {
				t.Errorf("number changed: %s", out)
			}
		})
	}
}

func TestRefusesWhatIsNotAnAddress(t *testing.T) {
	for _, s := range []string{"", "no-at-sign", "bad\xffutf8@example.com"} {
		if _, err := addrscrub.New(s); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
	m, _ := addrscrub.New(addrscrubtest.Address)
	for _, doc := range []string{"", "{", `{"a":1} {"b":2}`} {
		if _, _, err := m.RedactJSON([]byte(doc)); err == nil {
			t.Errorf("RedactJSON(%q) accepted", doc)
		}
	}
}
