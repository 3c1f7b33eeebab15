package intake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pii"
)

// LeadRequest is a decoded sign-up with the request-only fields beside it.
type LeadRequest struct {
	mailslot.Lead
	// Redirect is where a form post asks to be sent on success (not yet
	// checked against the allowlist).
	Redirect string
	// IdemKey comes from the idempotency_key form field or JSON member.
	IdemKey string
	// Bot is set when the honeypot field was filled: the caller answers as
	// if all went well and stores nothing.
	Bot bool
	// Tokens are the bot-challenge tokens the sign-up carried.
	Tokens ChallengeTokens
}

// HoneypotField is the form field that humans never see and bots fill in.
const HoneypotField = "website"

// DecodeLead parses and validates a sign-up body.
func DecodeLead(f Format, body []byte) (LeadRequest, error) {
	var (
		vals map[string]string
		errs = fieldErrs{}
	)
	switch f {
	case FormatJSON:
		if v, ok := plainLeadFields(body); ok {
			vals = v
			break
		}
		if v, ok := leadFields(body); ok {
			vals = v
			break
		}
		var err error
		if vals, err = generalLeadFields(body, errs); err != nil {
			return LeadRequest{}, err
		}
	case FormatForm:
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return LeadRequest{}, &Error{Code: CodeInvalidForm}
		}
		vals = make(map[string]string, len(q))
		for k, vs := range q {
			if len(vs) > 1 {
				errs.add(k, FieldDuplicate)
				continue
			}
			vals[k] = vs[0]
		}
	default:
		return LeadRequest{}, &Error{Code: CodeInvalidJSON}
	}
	req := validateLead(vals, errs)
	return req, errs.err()
}

// generalLeadFields decodes any JSON object into the field map, recording
// a field error for each member that is not a string and for UTM given both
// nested and flat.
func generalLeadFields(body []byte, errs fieldErrs) (map[string]string, error) {
	m, err := jsonObject(body)
	if err != nil {
		return nil, err
	}
	vals := make(map[string]string, len(m))
	for k, raw := range m {
		if k == "utm" {
			continue // merged below, so that a duplicate is caught whatever the map order
		}
		s, ok := jsonString(raw)
		if !ok {
			errs.add(k, FieldInvalid)
			continue
		}
		vals[k] = s
	}
	if raw, ok := m["utm"]; ok {
		nested := map[string]string{}
		if err := flattenUTM(raw, nested); err != nil {
			errs.add("utm", FieldInvalid)
		}
		for k, v := range nested {
			if _, dup := vals[k]; dup { // utm_x given both nested and flat
				errs.add(k, FieldDuplicate)
				continue
			}
			vals[k] = v
		}
	}
	return vals, nil
}

// flattenUTM moves a nested "utm" object into utm_* keys so that both
// encodings are validated and stored the same way.
func flattenUTM(raw json.RawMessage, vals map[string]string) error {
	if string(raw) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return err
	}
	for k, v := range m {
		s, ok := jsonString(v)
		if !ok {
			vals["utm_"+k] = "\x00" // fails validation as invalid
			continue
		}
		vals["utm_"+k] = s
	}
	return nil
}

func validateLead(vals map[string]string, errs fieldErrs) LeadRequest {
	var req LeadRequest
	for k, v := range vals {
		var code string
		switch k {
		case "email":
			if strings.TrimSpace(v) == "" {
				continue // reported as required below
			}
			e, err := pii.NormalizeEmail(v)
			if err != nil {
				code = FieldInvalid
			}
			req.Email = e
		case "property":
			req.Property, code = ident(v, maxProperty)
		case "consent":
			switch c := strings.ToLower(strings.TrimSpace(v)); c {
			case "", mailslot.ConsentPending, mailslot.ConsentExpress, mailslot.ConsentImplied:
				req.Consent = c
			default:
				code = FieldInvalid
			}
		case "policy_version":
			req.PolicyVersion, code = ident(v, maxShort)
		case "source":
			req.Source, code = ident(v, maxShort)
		case "name":
			req.Name, code = text(v, maxName)
		case "page":
			req.Page, code = urlText(v, maxURL)
		case "referrer":
			req.Referrer, code = urlText(v, maxURL)
		case "image_url":
			req.ImageURL, code = text(v, maxURL)
		case "redirect":
			req.Redirect, code = text(v, maxURL)
		case "idempotency_key":
			req.IdemKey, code = ident(v, maxIdemKey)
		case HoneypotField:
			req.Bot = strings.TrimSpace(v) != ""
		case TurnstileField:
			req.Tokens.Turnstile, code = challengeToken(v)
		case HCaptchaField:
			req.Tokens.HCaptcha, code = challengeToken(v)
		case HCaptchaCompatField:
			if _, both := vals[HCaptchaField]; !both {
				req.Tokens.HCaptcha, code = challengeToken(v)
			}
		case AltchaField:
			req.Tokens.Altcha, code = challengeToken(v)
		default:
			name, ok := strings.CutPrefix(k, "utm_")
			if p := utmField(&req.UTM, name); ok && p != nil {
				*p, code = urlText(v, maxUTM)
				break
			}
			code = FieldUnknown
		}
		if code != "" {
			errs.add(k, code)
		}
	}
	if req.Email == "" {
		if _, bad := errs["email"]; !bad {
			errs.add("email", FieldRequired)
		}
	}
	if req.Property == "" {
		if _, bad := errs["property"]; !bad {
			errs.add("property", FieldRequired)
		}
	}
	if req.Consent == "" {
		req.Consent = mailslot.ConsentPending
	}
	return req
}

// leadFields reads a well-formed JSON sign-up — an object whose members
// are strings or null, with "utm" an object of the same — straight into
// the field map, in one pass over the tokens. That is several times
// cheaper than the general path (a map of raw members, each decoded
// again), and it is what well-behaved clients send. It reports false for
// anything else (a non-string member, "utm" twice or beside a flat utm_*,
// trailing data), and the general path then says exactly what is wrong.
// Member names are compared exactly, as the general path does.
func leadFields(body []byte) (map[string]string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	vals := make(map[string]string, 16)
	var nested map[string]string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key := t.(string) // object keys are always strings
		if key != "utm" {
			v, ok := stringToken(dec)
			if !ok {
				return nil, false
			}
			vals[key] = v
			continue
		}
		if nested != nil {
			return nil, false
		}
		nested = map[string]string{}
		t, err = dec.Token()
		if err != nil {
			return nil, false
		}
		if t == nil {
			continue // "utm": null is no UTM at all
		}
		if t != json.Delim('{') {
			return nil, false
		}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, false
			}
			v, ok := stringToken(dec)
			if !ok {
				return nil, false
			}
			nested["utm_"+t.(string)] = v
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('}') {
			return nil, false
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	for k, v := range nested {
		if _, dup := vals[k]; dup {
			return nil, false
		}
		vals[k] = v
	}
	return vals, true
}

// plainLeadFields is leadFields for the body every browser script sends:
// member names and values that are strings without escapes (or null), "utm"
// at most once and an object of the same. Such a string decodes to its own
// bytes when they are valid UTF-8, so the scan only finds where each one
// ends, and every key and value is a substring of one copy of the body.
// Anything else (an escape, a number, a syntax error) reports false, and
// leadFields decides.
func plainLeadFields(body []byte) (map[string]string, bool) {
	sc := plainScanner{s: string(body)}
	if !sc.skip('{') {
		return nil, false
	}
	vals := make(map[string]string, 16)
	var nested map[string]string
	if !sc.skip('}') {
		for {
			key, ok := sc.str()
			if !ok || !sc.skip(':') {
				return nil, false
			}
			if key != "utm" {
				v, ok := sc.strOrNull()
				if !ok {
					return nil, false
				}
				vals[key] = v
			} else {
				if nested != nil {
					return nil, false
				}
				nested = map[string]string{}
				if !sc.null() {
					if !sc.skip('{') {
						return nil, false
					}
					if !sc.skip('}') {
						for {
							k, ok := sc.str()
							if !ok || !sc.skip(':') {
								return nil, false
							}
							v, ok := sc.strOrNull()
							if !ok {
								return nil, false
							}
							nested["utm_"+k] = v
							if sc.skip('}') {
								break
							}
							if !sc.skip(',') {
								return nil, false
							}
						}
					}
				}
			}
			if sc.skip('}') {
				break
			}
			if !sc.skip(',') {
				return nil, false
			}
		}
	}
	sc.space()
	if sc.i != len(sc.s) {
		return nil, false
	}
	for k, v := range nested {
		if _, dup := vals[k]; dup {
			return nil, false
		}
		vals[k] = v
	}
	return vals, true
}

// plainScanner walks a JSON text for plainLeadFields.
type plainScanner struct {
	s string
	i int
}

// space skips JSON whitespace.
func (sc *plainScanner) space() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// skip consumes c, after whitespace, if it comes next.
func (sc *plainScanner) skip(c byte) bool {
	sc.space()
	if sc.i < len(sc.s) && sc.s[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// null consumes a null literal if it comes next.
func (sc *plainScanner) null() bool {
	sc.space()
	if strings.HasPrefix(sc.s[sc.i:], "null") {
		sc.i += len("null")
		return true
	}
	return false
}

// str consumes a string without escapes or control characters whose bytes
// are valid UTF-8, and returns its contents.
func (sc *plainScanner) str() (string, bool) {
	if !sc.skip('"') {
		return "", false
	}
	start := sc.i
	ascii := true
	for ; sc.i < len(sc.s); sc.i++ {
		switch c := sc.s[sc.i]; {
		case c == '"':
			v := sc.s[start:sc.i]
			sc.i++
			return v, ascii || utf8.ValidString(v)
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// strOrNull is str that also takes null, as "".
func (sc *plainScanner) strOrNull() (string, bool) {
	if sc.null() {
		return "", true
	}
	return sc.str()
}

// stringToken reads a value that must be a string or null (as "").
func stringToken(dec *json.Decoder) (string, bool) {
	t, err := dec.Token()
	if err != nil {
		return "", false
	}
	switch v := t.(type) {
	case string:
		return v, true
	case nil:
		return "", true
	}
	return "", false
}
