package intake_test

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
	"github.com/mailslot/mailslot/internal/pii"
)

// The fuzz targets take the Content-Type header as the handlers do, so
// FormatOf is fuzzed too. Seeds beyond these are in testdata/fuzz.

func FuzzDecodeLead(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"email":"a@example.com","property":"p"}`},
		{"application/json", `{"email":"A@Example.com ","property":"p","consent":"express","utm":{"source":"s"},"utm_medium":"m"}`},
		{"application/json", `{"email":"a@example.com","property":"p","utm":{"source":"s"},"utm_source":"t"}`},
		{"application/json", `{"email":"a@example.com","website":"x"}`},
		{"application/json", `{"email":"a@example.com","email":"b@example.com","property":"p"}`},
		{"application/x-www-form-urlencoded", "email=a%40example.com&property=p&name=%C3%A9&redirect=https%3A%2F%2Fx"},
		{"application/x-www-form-urlencoded", "email=a%40example.com&email=b&property=p;q"},
		{"text/plain", `{"email":"a@example.com","property":"p"}`},
		{"application/json; charset=utf-8", `[1,2]`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req, err := intake.DecodeLead(intake.FormatOf(contentType), body)
		if err != nil {
			checkError(t, err)
			return
		}
		checkLead(t, req)
		// What is stored must decode to itself: the payload the sync worker
		// reads is as valid as what the edge accepted.
		stored, jerr := json.Marshal(req.Lead)
		if jerr != nil {
			t.Fatalf("encode accepted lead: %v", jerr)
		}
		checkPayload(t, req.Lead, stored)
		again, err := intake.DecodeLead(intake.FormatJSON, stored)
		if err != nil {
			t.Fatalf("the stored lead %s does not decode again: %v", stored, err)
		}
		if !reflect.DeepEqual(again.Lead, req.Lead) {
			t.Fatalf("decoding the stored lead changed it:\n%+v\n%+v", req.Lead, again.Lead)
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	for _, s := range []struct {
		ct   string
		body string
		max  uint8
	}{
		{"application/json", `{"type":"page_view","property":"p"}`, 50},
		{"text/plain;charset=UTF-8", `{"events":[{"type":"click","property":"p","props":{"a":1,"b":"x","c":null,"d":true}}]}`, 2},
		{"application/json", `{"events":[{"type":"click","property":"p"},{"type":"click","property":"p"}]}`, 1},
		{"application/json", `{"type":"custom","property":"p","ts":"2025-01-01T00:00:00Z","utm":{"source":"s"}}`, 5},
		{"application/json", `{"type":"custom","property":"p","ts":1e14,"props":{"e":"x a@example.com"}}`, 5},
		{"text/plain", `{"events":[7,{"type":"x"}],"more":1}`, 5},
	} {
		f.Add(s.ct, []byte(s.body), s.max)
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte, maxEvents uint8) {
		max := int(maxEvents)%64 + 1
		evs, err := intake.DecodeEvents(intake.FormatOf(contentType), body, max)
		if err != nil {
			checkError(t, err)
			return
		}
		if len(evs) < 1 || len(evs) > max {
			t.Fatalf("%d events accepted, limit %d", len(evs), max)
		}
		items := make([]json.RawMessage, len(evs))
		for i, ev := range evs {
			checkEvent(t, ev)
			// The handler encodes each event; a failure there is a 500.
			b, jerr := json.Marshal(ev)
			if jerr != nil {
				t.Fatalf("encode accepted event %+v: %v", ev, jerr)
			}
			// The payload keeps the client's clock as client_time; it came
			// in as ts.
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if ct, ok := m["client_time"]; ok {
				m["ts"] = ct
				delete(m, "client_time")
			}
			items[i], _ = json.Marshal(m)
		}
		stored, _ := json.Marshal(map[string]any{"events": items})
		again, err := intake.DecodeEvents(intake.FormatJSON, stored, max)
		if err != nil {
			t.Fatalf("the stored events %s do not decode again: %v", stored, err)
		}
		first, _ := json.Marshal(evs)
		second, _ := json.Marshal(again)
		if !bytes.Equal(first, second) {
			t.Fatalf("decoding the stored events changed them:\n%s\n%s", first, second)
		}
	})
}

var errorCodes = map[string]bool{
	intake.CodeInvalidJSON: true, intake.CodeInvalidForm: true, intake.CodeInvalidFields: true, intake.CodeTooMany: true,
}

var fieldCodes = map[string]bool{
	intake.FieldRequired: true, intake.FieldInvalid: true, intake.FieldTooLong: true,
	intake.FieldUnknown: true, intake.FieldDuplicate: true, intake.FieldPII: true,
}

// checkError: every refusal is an *intake.Error with a known code and a
// bounded set of known field codes.
func checkError(t *testing.T, err error) {
	t.Helper()
	e, ok := intake.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *intake.Error", err, err)
	}
	if !errorCodes[e.Code] {
		t.Fatalf("unknown error code %q", e.Code)
	}
	if e.Code == intake.CodeInvalidFields && len(e.Fields) == 0 {
		t.Fatalf("invalid_fields without fields")
	}
	if len(e.Fields) > 16 {
		t.Fatalf("%d field errors, want at most 16", len(e.Fields))
	}
	for k, v := range e.Fields {
		if len(k) > 64 || !fieldCodes[v] {
			t.Fatalf("field error %q: %q", k, v)
		}
	}
}

// checkText: valid UTF-8, trimmed, no control characters, at most max bytes.
func checkText(t *testing.T, name, v string, max int) {
	t.Helper()
	if len(v) > max {
		t.Fatalf("%s is %d bytes, limit %d", name, len(v), max)
	}
	if !utf8.ValidString(v) || strings.TrimSpace(v) != v || strings.ContainsFunc(v, unicode.IsControl) {
		t.Fatalf("%s = %q is not clean text", name, v)
	}
}

func checkIdent(t *testing.T, name, v string, max int, required bool) {
	t.Helper()
	checkText(t, name, v, max)
	if required && v == "" {
		t.Fatalf("%s is empty", name)
	}
	for _, r := range v {
		if !(r < utf8.RuneSelf && (r == '.' || r == '_' || r == ':' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			t.Fatalf("%s = %q has %q", name, v, r)
		}
	}
}

func checkUTM(t *testing.T, u mailslot.UTM) {
	t.Helper()
	for name, v := range map[string]string{"source": u.Source, "medium": u.Medium, "campaign": u.Campaign, "term": u.Term, "content": u.Content} {
		checkText(t, "utm "+name, v, 200)
	}
}

func checkLead(t *testing.T, req intake.LeadRequest) {
	t.Helper()
	if req.Bot {
		return // answered like a success, stored nowhere
	}
	if req.Email == "" {
		t.Fatal("accepted a lead without an email")
	}
	if n, err := pii.NormalizeEmail(req.Email); err != nil || n != req.Email {
		t.Fatalf("email %q is not normalized (normalizes to %q, %v)", req.Email, n, err)
	}
	checkIdent(t, "property", req.Property, 64, true)
	switch req.Consent {
	case mailslot.ConsentPending, mailslot.ConsentExpress, mailslot.ConsentImplied:
	default:
		t.Fatalf("consent %q", req.Consent)
	}
	checkIdent(t, "policy_version", req.PolicyVersion, 64, false)
	checkIdent(t, "source", req.Source, 64, false)
	checkIdent(t, "idempotency_key", req.IdemKey, 128, false)
	checkText(t, "name", req.Name, 200)
	checkText(t, "page", req.Page, 2048)
	checkText(t, "referrer", req.Referrer, 2048)
	checkText(t, "redirect", req.Redirect, 2048)
	checkUTM(t, req.UTM)
}

func checkEvent(t *testing.T, ev mailslot.Event) {
	t.Helper()
	switch ev.Type {
	case mailslot.EventPageView, mailslot.EventFormSubmit, mailslot.EventClick, mailslot.EventCustom:
	default:
		t.Fatalf("event type %q", ev.Type)
	}
	checkIdent(t, "property", ev.Property, 64, true)
	checkIdent(t, "name", ev.Name, 64, false)
	checkIdent(t, "submission_id", ev.SubmissionID, 64, false)
	checkText(t, "page", ev.Page, 2048)
	checkText(t, "referrer", ev.Referrer, 2048)
	checkUTM(t, ev.UTM)
	if len(ev.Props) > 20 {
		t.Fatalf("%d props", len(ev.Props))
	}
	for k, v := range ev.Props {
		checkIdent(t, "prop key", k, 64, true)
		switch v := v.(type) {
		case string:
			checkText(t, "prop "+k, v, 256)
			if pii.ContainsEmail(v) {
				t.Fatalf("prop %s = %q holds an email address", k, v)
			}
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("prop %s = %v", k, v)
			}
		case bool, nil:
		default:
			t.Fatalf("prop %s has type %T", k, v)
		}
	}
	if ev.ClientTime != nil && (ev.ClientTime.Year() < 1970 || ev.ClientTime.Year() > 9999) {
		t.Fatalf("client time %v", ev.ClientTime)
	}
}

// checkPayload holds EncodePayload to encoding/json's encoding of the whole
// payload.
func checkPayload(t *testing.T, lead mailslot.Lead, leadJSON []byte) {
	t.Helper()
	rec := mailslot.ConsentRecord{Property: lead.Property, PolicyVersion: lead.PolicyVersion, Status: lead.Consent,
		Source: lead.Source, RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC), IPHMAC: "00ff"}
	got, err := mailslot.EncodePayload(leadJSON, rec)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(mailslot.LeadPayload{Lead: lead, ConsentRecord: rec})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodePayload:\n%s\njson.Marshal:\n%s", got, want)
	}
}

func TestEncodePayload(t *testing.T) {
	t.Parallel()
	for _, lead := range []mailslot.Lead{
		{Email: "a@example.com", Property: "p", Consent: mailslot.ConsentPending},
		{Email: "a@example.com", Property: "p", Consent: mailslot.ConsentExpress, PolicyVersion: "v1", Source: "footer",
			Name: "<Zoë & \u2028 \"co\">", Page: "https://example.com/?a=1&b=2", Referrer: "https://r.example",
			UTM: mailslot.UTM{Source: "s", Content: "c"}, ImageURL: "https://cdn.example.com/a.png"},
	} {
		b, err := json.Marshal(lead)
		if err != nil {
			t.Fatal(err)
		}
		checkPayload(t, lead, b)
	}
	if _, err := mailslot.EncodePayload([]byte("null"), mailslot.ConsentRecord{}); err == nil {
		t.Error("EncodePayload took a lead that is not an object")
	}
}
