// Package intake turns request bodies into validated, normalized sign-ups
// and telemetry events. It is the boundary where untrusted input is checked:
// everything past it can rely on field lengths, allowed values and a
// normalized email. Nothing here does I/O, so it is fuzzed directly.
package intake

import (
	"encoding/json"
	"errors"
	"maps"
	"mime"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/pii"
)

// Body formats a request may use.
type Format int

// Formats.
const (
	FormatUnknown Format = iota
	FormatJSON
	FormatForm
	FormatText // navigator.sendBeacon's text/plain string body, holding JSON
)

// FormatOf maps a Content-Type header to a format. Parameters other than
// charset=utf-8 (any case) make the type unsupported.
func FormatOf(contentType string) Format {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return FormatUnknown
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return FormatUnknown
		}
	}
	switch mt {
	case "application/json":
		return FormatJSON
	case "application/x-www-form-urlencoded":
		return FormatForm
	case "text/plain":
		return FormatText
	}
	return FormatUnknown
}

// The error codes a rejected body gets, from the one table of codes in
// package mailslot.
const (
	CodeInvalidJSON   = mailslot.CodeInvalidJSON
	CodeInvalidForm   = mailslot.CodeInvalidForm
	CodeInvalidFields = mailslot.CodeInvalidFields
	CodeTooMany       = mailslot.CodeTooManyEvents
)

// Field error codes.
const (
	FieldRequired  = "required"
	FieldInvalid   = "invalid"
	FieldTooLong   = "too_long"
	FieldUnknown   = "unknown"
	FieldDuplicate = "duplicate"
	FieldPII       = "contains_personal_data"
)

// maxFieldErrors bounds the error map a client can make us build.
const maxFieldErrors = 16

// Error is a rejected body: a top-level code and, for field problems, the
// code for each field.
type Error struct {
	Code   string
	Fields map[string]string
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Code
	}
	keys := slices.Sorted(maps.Keys(e.Fields))
	return e.Code + ": " + strings.Join(keys, ", ")
}

// FirstField is the alphabetically first field in error, for form
// redirects that can carry only one.
func (e *Error) FirstField() string {
	if len(e.Fields) == 0 {
		return ""
	}
	return slices.Sorted(maps.Keys(e.Fields))[0]
}

type fieldErrs map[string]string

func (f fieldErrs) add(field, code string) {
	if _, ok := f[field]; ok || len(f) >= maxFieldErrors {
		return
	}
	if len(field) > 64 {
		field = field[:64]
	}
	f[field] = code
}

func (f fieldErrs) err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidFields, Fields: f}
}

// AsError extracts an *Error.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// utmField is the member of u that a flat utm_<name> field sets.
func utmField(u *mailslot.UTM, name string) *string {
	switch name {
	case "source":
		return &u.Source
	case "medium":
		return &u.Medium
	case "campaign":
		return &u.Campaign
	case "term":
		return &u.Term
	case "content":
		return &u.Content
	}
	return nil
}

// Field length limits.
const (
	maxProperty = 64
	maxShort    = 64
	maxName     = 200
	maxURL      = 2048
	maxUTM      = 200
	maxIdemKey  = 128
)

// text checks a free-text value: valid UTF-8, no control characters, at
// most max bytes after trimming. It returns the trimmed value or a code.
func text(v string, max int) (string, string) {
	v = strings.TrimSpace(v)
	if !utf8.ValidString(v) {
		return "", FieldInvalid
	}
	if len(v) > max {
		return "", FieldTooLong
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return "", FieldInvalid
		}
	}
	return v, ""
}

// EmailRedacted replaces an address found inside a URL or campaign value.
const EmailRedacted = pii.EmailRedacted

// stripEmails removes addresses from free text that is not meant to hold
// one (a page URL with ?email=…, a referrer, a UTM value): telemetry and
// attribution must never carry an address that erasure would have to
// chase. Only the address goes; the rest of the URL stays readable.
func stripEmails(v string) string { return pii.RedactEmails(v) }

// url checks free text that may hold a URL and strips addresses from it.
func urlText(v string, max int) (string, string) {
	v, code := text(v, max)
	return stripEmails(v), code
}

// ident checks an identifier such as a property or consent source:
// letters, digits and . _ : - only.
func ident(v string, max int) (string, string) {
	v, code := text(v, max)
	if code != "" {
		return "", code
	}
	for _, r := range v {
		if !(r < utf8.RuneSelf && (r == '.' || r == '_' || r == ':' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return "", FieldInvalid
		}
	}
	return v, ""
}

// Ident checks a property-like identifier (letters, digits, . _ : -, at
// most 64 bytes) and returns it trimmed, or a field error code.
func Ident(v string) (string, string) {
	v, code := ident(v, maxProperty)
	if code == "" && v == "" {
		return "", FieldRequired
	}
	return v, code
}

// jsonObject parses a JSON object into its members, rejecting anything
// else (arrays, scalars, trailing data). A key given twice keeps its last
// value, as encoding/json does.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, &Error{Code: CodeInvalidJSON}
	}
	return m, nil
}

// jsonString decodes a member that must be a JSON string (null counts as
// absent).
func jsonString(raw json.RawMessage) (string, bool) {
	if string(raw) == "null" {
		return "", true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
