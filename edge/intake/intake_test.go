package intake_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
)

func TestFormatOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		contentType string
		want        intake.Format
	}{
		{"application/json", intake.FormatJSON},
		{"application/json; charset=utf-8", intake.FormatJSON},
		{"Application/JSON; Charset=UTF-8", intake.FormatJSON},
		{"application/json;", intake.FormatJSON},
		{"application/x-www-form-urlencoded", intake.FormatForm},
		{"application/x-www-form-urlencoded; charset=UTF-8", intake.FormatForm},
		{"text/plain;charset=UTF-8", intake.FormatText}, // what sendBeacon sends for a string
		{"text/plain", intake.FormatText},
		{"", intake.FormatUnknown},
		{"application/json; charset=latin1", intake.FormatUnknown},
		{"application/x-www-form-urlencoded; charset=ISO-8859-1", intake.FormatUnknown},
		{"application/json; boundary=x", intake.FormatUnknown},
		{"multipart/form-data; boundary=x", intake.FormatUnknown},
		{"application/xml", intake.FormatUnknown},
		{"text/html", intake.FormatUnknown},
		{"application/json-patch+json", intake.FormatUnknown},
		{"json", intake.FormatUnknown},
		{"application/json; charset", intake.FormatUnknown},
	}
	for _, tt := range tests {
		if got := intake.FormatOf(tt.contentType); got != tt.want {
			t.Errorf("FormatOf(%q) = %v, want %v", tt.contentType, got, tt.want)
		}
	}
}

func TestDecodeLead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format intake.Format
		body   string
		want   intake.LeadRequest
		code   string            // error code, "" for success
		fields map[string]string // field errors
	}{
		{
			name:   "json minimal",
			format: intake.FormatJSON,
			body:   `{"email":"A@Example.com","property":"p"}`,
			want:   intake.LeadRequest{Lead: mailslot.Lead{Email: "a@example.com", Property: "p", Consent: "pending"}},
		},
		{
			name:   "json everything",
			format: intake.FormatJSON,
			body: `{"email":" a@example.com ","property":"site.a:b-c_d","consent":" EXPRESS ","policy_version":"v2",
				"source":"footer","name":"  Ann  Lee ","page":"https://x.example/","referrer":"https://r.example/",
				"utm":{"source":"s","medium":"m","campaign":"c","term":"t","content":"x"},
				"redirect":"https://x.example/ok","idempotency_key":"k-1","website":"  "}`,
			want: intake.LeadRequest{
				Lead: mailslot.Lead{Email: "a@example.com", Property: "site.a:b-c_d", Consent: "express", PolicyVersion: "v2",
					Source: "footer", Name: "Ann  Lee", Page: "https://x.example/", Referrer: "https://r.example/",
					UTM: mailslot.UTM{Source: "s", Medium: "m", Campaign: "c", Term: "t", Content: "x"}},
				Redirect: "https://x.example/ok", IdemKey: "k-1",
			},
		},
		{
			name:   "json null members are absent",
			format: intake.FormatJSON,
			body:   `{"email":"a@example.com","property":"p","name":null,"utm":null}`,
			want:   intake.LeadRequest{Lead: mailslot.Lead{Email: "a@example.com", Property: "p", Consent: "pending"}},
		},
		{
			name:   "form with flat utm",
			format: intake.FormatForm,
			body:   "email=a%40example.com&property=p&consent=implied&utm_source=s&utm_campaign=c",
			want: intake.LeadRequest{Lead: mailslot.Lead{Email: "a@example.com", Property: "p", Consent: "implied",
				UTM: mailslot.UTM{Source: "s", Campaign: "c"}}},
		},
		{
			name:   "honeypot",
			format: intake.FormatForm,
			body:   "email=a%40example.com&property=p&website=http%3A%2F%2Fspam",
			want: intake.LeadRequest{Lead: mailslot.Lead{Email: "a@example.com", Property: "p", Consent: "pending"},
				Bot: true},
		},
		{name: "malformed json", format: intake.FormatJSON, body: `{"email"`, code: intake.CodeInvalidJSON},
		{name: "json array", format: intake.FormatJSON, body: `[]`, code: intake.CodeInvalidJSON},
		{name: "json trailing data", format: intake.FormatJSON, body: `{} []`, code: intake.CodeInvalidJSON},
		{name: "broken form", format: intake.FormatForm, body: "a=%zz", code: intake.CodeInvalidForm},
		{name: "text is no lead format", format: intake.FormatText, body: `{}`, code: intake.CodeInvalidJSON},
		{name: "unknown format", format: intake.FormatUnknown, body: `{}`, code: intake.CodeInvalidJSON},
		{
			name: "missing", format: intake.FormatJSON, body: `{}`, code: intake.CodeInvalidFields,
			fields: map[string]string{"email": "required", "property": "required"},
		},
		{
			name: "invalid values", format: intake.FormatJSON,
			body: `{"email":"a@@example.com","property":"a b","consent":"withdrawn","source":"x/y","policy_version":1,"idempotency_key":"k k"}`,
			code: intake.CodeInvalidFields,
			fields: map[string]string{"email": "invalid", "property": "invalid", "consent": "invalid", "source": "invalid",
				"policy_version": "invalid", "idempotency_key": "invalid"},
		},
		{
			name: "too long", format: intake.FormatJSON,
			body: `{"email":"a@example.com","property":"` + strings.Repeat("p", 65) + `","name":"` + strings.Repeat("n", 201) +
				`","page":"` + strings.Repeat("u", 2049) + `","utm":{"term":"` + strings.Repeat("t", 201) + `"}}`,
			code:   intake.CodeInvalidFields,
			fields: map[string]string{"property": "too_long", "name": "too_long", "page": "too_long", "utm_term": "too_long"},
		},
		{
			name: "email too long", format: intake.FormatJSON,
			body: `{"email":"` + strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + `.com","property":"p"}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"email": "invalid"},
		},
		{
			name: "unknown fields", format: intake.FormatJSON, body: `{"email":"a@example.com","property":"p","phone":"1","utm_foo":"x"}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"phone": "unknown", "utm_foo": "unknown"},
		},
		{
			name: "utm member not a string", format: intake.FormatJSON, body: `{"email":"a@example.com","property":"p","utm":{"source":1}}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"utm_source": "invalid"},
		},
		{
			name: "utm nested and flat", format: intake.FormatJSON,
			body: `{"email":"a@example.com","property":"p","utm_source":"b","utm":{"source":"a"}}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"utm_source": "duplicate"},
		},
		{
			name: "repeated form field", format: intake.FormatForm, body: "email=a%40example.com&property=p&property=q",
			code: intake.CodeInvalidFields, fields: map[string]string{"property": "duplicate"},
		},
		{
			name: "newline in name", format: intake.FormatForm, body: "email=a%40example.com&property=p&name=a%0Ab",
			code: intake.CodeInvalidFields, fields: map[string]string{"name": "invalid"},
		},
		{
			name: "invalid UTF-8", format: intake.FormatForm, body: "email=a%40example.com&property=p&name=%FF",
			code: intake.CodeInvalidFields, fields: map[string]string{"name": "invalid"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := intake.DecodeLead(tt.format, []byte(tt.body))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("got  %+v\nwant %+v", got, tt.want)
				}
				return
			}
			e, ok := intake.AsError(err)
			if !ok {
				t.Fatalf("error %v, want an *intake.Error with code %s", err, tt.code)
			}
			if e.Code != tt.code {
				t.Errorf("code = %s, want %s", e.Code, tt.code)
			}
			if len(tt.fields) > 0 || len(e.Fields) > 0 {
				if !reflect.DeepEqual(e.Fields, tt.fields) {
					t.Errorf("fields = %v, want %v", e.Fields, tt.fields)
				}
			}
		})
	}
}

// TestDecodeLeadBoundsFieldErrors checks that a body with many bad fields
// cannot make the edge build an error map of any size.
func TestDecodeLeadBoundsFieldErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 1000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"field` + strings.Repeat("x", 100) + string(rune('a'+i%26)) + strings.Repeat("y", i) + `":1`)
	}
	b.WriteString(`}`)
	_, err := intake.DecodeLead(intake.FormatJSON, []byte(b.String()))
	e, ok := intake.AsError(err)
	if !ok || e.Code != intake.CodeInvalidFields {
		t.Fatalf("error %v, want invalid_fields", err)
	}
	if len(e.Fields) > 16 {
		t.Errorf("%d field errors, want at most 16", len(e.Fields))
	}
	for k := range e.Fields {
		if len(k) > 64 {
			t.Errorf("field name of %d bytes echoed back, want at most 64", len(k))
		}
	}
}

func TestDecodeEvents(t *testing.T) {
	t.Parallel()
	ts := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		format intake.Format
		body   string
		max    int
		want   []mailslot.Event
		code   string
		fields map[string]string
	}{
		{
			name: "single", format: intake.FormatJSON, max: 5,
			body: `{"type":"page_view","property":"p","page":" https://x.example/ ","ts":"2025-03-01T10:00:00+01:00"}`,
			want: []mailslot.Event{{Type: "page_view", Property: "p", Page: "https://x.example/", ClientTime: &ts}},
		},
		{
			name: "beacon batch", format: intake.FormatText, max: 2,
			body: `{"events":[{"type":"click","property":"p","name":"cta","props":{"n":1.5,"b":false,"s":"x","z":null}},
				{"type":"custom","property":"p","ts":1740819600000,"submission_id":"s1","utm":{"source":"a"}}]}`,
			want: []mailslot.Event{
				{Type: "click", Property: "p", Name: "cta", Props: map[string]any{"n": 1.5, "b": false, "s": "x", "z": nil}},
				{Type: "custom", Property: "p", ClientTime: &ts, SubmissionID: "s1", UTM: mailslot.UTM{Source: "a"}},
			},
		},
		{name: "form is no event format", format: intake.FormatForm, body: `type=click`, max: 5, code: intake.CodeInvalidJSON},
		{name: "malformed", format: intake.FormatText, body: `{`, max: 5, code: intake.CodeInvalidJSON},
		{
			name: "too many", format: intake.FormatJSON, max: 2,
			body: `{"events":[{"type":"click","property":"p"},{"type":"click","property":"p"},{"type":"click","property":"p"}]}`,
			code: intake.CodeTooMany, fields: map[string]string{"events": "too_long"},
		},
		{
			name: "empty batch", format: intake.FormatJSON, max: 2, body: `{"events":[]}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"events": "required"},
		},
		{
			name: "missing", format: intake.FormatJSON, max: 2, body: `{}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"type": "required", "property": "required"},
		},
		{
			name: "bad values", format: intake.FormatJSON, max: 2,
			body: `{"type":"buy","property":"p q","name":"a b","ts":-1,"props":{"a":[1],"b c":"x","e":"mail me at a@example.com"},"utm":{"x":"y"}}`,
			code: intake.CodeInvalidFields,
			fields: map[string]string{"type": "invalid", "property": "invalid", "name": "invalid", "ts": "invalid",
				"props.a": "invalid", "props.b c": "invalid", "props.e": "contains_personal_data", "utm.x": "unknown"},
		},
		{
			// Wrapped addresses are still addresses.
			name: "wrapped addresses in props", format: intake.FormatJSON, max: 2,
			body: `{"type":"click","property":"p","props":{"m":"mailto:ann@example.com","b":"<ann@example.com>","q":"\"ann@example.com\"",
				"d":"write to ann@example.com.","p":"ann%40example.com","x":"%61nn%40example.com"}}`,
			code: intake.CodeInvalidFields,
			fields: map[string]string{"props.m": "contains_personal_data", "props.b": "contains_personal_data", "props.q": "contains_personal_data",
				"props.d": "contains_personal_data", "props.p": "contains_personal_data", "props.x": "contains_personal_data"},
		},
		{
			// Only the address leaves a URL; the rest stays readable.
			name: "address redacted from a page URL", format: intake.FormatJSON, max: 2,
			body: `{"type":"page_view","property":"p","page":"https://x.example/?e=ann@example.com&ref=news","referrer":"https://y.example/?to=ann%40example.com"}`,
			want: []mailslot.Event{{Type: "page_view", Property: "p", Page: "https://x.example/?e=[email]&ref=news", Referrer: "https://y.example/?to=[email]"}},
		},
		{
			name: "too many props", format: intake.FormatJSON, max: 2,
			body: `{"type":"click","property":"p","props":{` + manyProps(21) + `}}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"props": "too_long"},
		},
		{
			name: "prop value too long", format: intake.FormatJSON, max: 2,
			body: `{"type":"click","property":"p","props":{"v":"` + strings.Repeat("v", 257) + `"}}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"props.v": "too_long"},
		},
		{
			name: "timestamp outside the encodable range", format: intake.FormatJSON, max: 2,
			body: `{"type":"click","property":"p","ts":"0000-01-01T00:00:00+01:00"}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"ts": "invalid"},
		},
		{
			name: "errors in batch items are prefixed", format: intake.FormatJSON, max: 3,
			body: `{"events":[{"type":"click","property":"p"},{"property":"p","x":1},"no"]}`,
			code: intake.CodeInvalidFields, fields: map[string]string{"events.1.type": "required", "events.1.x": "unknown", "events.2": "invalid"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := intake.DecodeEvents(tt.format, []byte(tt.body), tt.max)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					g, _ := json.Marshal(got)
					w, _ := json.Marshal(tt.want)
					t.Errorf("got  %s\nwant %s", g, w)
				}
				return
			}
			e, ok := intake.AsError(err)
			if !ok {
				t.Fatalf("error %v, want an *intake.Error with code %s", err, tt.code)
			}
			if e.Code != tt.code {
				t.Errorf("code = %s, want %s", e.Code, tt.code)
			}
			if len(tt.fields) > 0 || len(e.Fields) > 0 {
				if !reflect.DeepEqual(e.Fields, tt.fields) {
					t.Errorf("fields = %v, want %v", e.Fields, tt.fields)
				}
			}
		})
	}
}

func manyProps(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"k` + strings.Repeat("x", i) + `":1`
	}
	return strings.Join(parts, ",")
}
