package intake_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/edge/intake"
)

// TestChallengeTokens: the token fields are taken from JSON (the plain
// scan, the token decoder and the general path alike) and from forms,
// never stored in the lead, and validated.
func TestChallengeTokens(t *testing.T) {
	want := intake.ChallengeTokens{Turnstile: "0.abc-_", HCaptcha: "P1_eyJ.x", Altcha: "eyJhbGdvIjoiU0hBLTI1NiJ9+/="}
	form := url.Values{"email": {"a@example.com"}, "property": {"p"},
		"cf-turnstile-response": {want.Turnstile}, "h-captcha-response": {want.HCaptcha}, "altcha": {want.Altcha}}
	for _, tc := range []struct {
		name string
		f    intake.Format
		body string
	}{
		{"plain json", intake.FormatJSON, `{"email":"a@example.com","property":"p","cf-turnstile-response":"0.abc-_","h-captcha-response":"P1_eyJ.x","altcha":"eyJhbGdvIjoiU0hBLTI1NiJ9+/="}`},
		{"escaped json", intake.FormatJSON, `{"email":"a@example.com","property":"p","cf-turnstile-response":"0.abc\u002d_","h-captcha-response":"P1_eyJ.x","altcha":"eyJhbGdvIjoiU0hBLTI1NiJ9+\/="}`},
		{"general json", intake.FormatJSON, `{"email":"a@example.com","property":"p","cf-turnstile-response":"0.abc-_","h-captcha-response":"P1_eyJ.x","altcha":"eyJhbGdvIjoiU0hBLTI1NiJ9+/=","utm":{"source":"s"},"utm_medium":"m"}`},
		{"form", intake.FormatForm, form.Encode()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := intake.DecodeLead(tc.f, []byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeLead: %v", err)
			}
			if req.Tokens != want {
				t.Fatalf("tokens %+v, want %+v", req.Tokens, want)
			}
			if req.Lead.Challenge != "" {
				t.Fatalf("the request set the stored verdict: %q", req.Lead.Challenge)
			}
		})
	}
	// hCaptcha's compatibility field stands in for its own.
	req, err := intake.DecodeLead(intake.FormatForm, []byte("email=a%40example.com&property=p&g-recaptcha-response=P1_x"))
	if err != nil || req.Tokens.HCaptcha != "P1_x" {
		t.Fatalf("compat field: %+v %v", req.Tokens, err)
	}
	for _, tc := range []struct{ field, value, code string }{
		{"altcha", strings.Repeat("a", 2049), intake.FieldTooLong},
		{"cf-turnstile-response", "a b", intake.FieldInvalid},
		{"h-captcha-response", "tok\x01", intake.FieldInvalid},
		{"challenge", "passed", intake.FieldUnknown}, // the verdict is the edge's, never the client's
	} {
		_, err := intake.DecodeLead(intake.FormatForm, []byte(url.Values{"email": {"a@example.com"}, "property": {"p"}, tc.field: {tc.value}}.Encode()))
		e, ok := intake.AsError(err)
		if !ok || e.Fields[tc.field] != tc.code {
			t.Errorf("%s=%q: %v, want %s", tc.field, tc.value, err, tc.code)
		}
	}
}
