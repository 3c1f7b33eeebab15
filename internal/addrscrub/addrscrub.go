// Package addrscrub finds one known email address inside text and JSON
// however it is wrapped: "mailto:", angle brackets, quotes, a trailing dot,
// and any of its characters percent-encoded, in any letter case. Erasure
// uses it to scrub the address from event payloads at the edge; the same
// rules, written for Postgres, are mailslot.address_pattern (pgschema 006).
//
// It looks for one address it is given, not for addresses in general
// (that is the intake's filter): an erasure knows whom it erases.
package addrscrub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Replacement is what an address found inside a value becomes, the same
// marker the intake uses for addresses in URLs.
const Replacement = "[email]"

// Matcher finds one address.
type Matcher struct {
	re *regexp.Regexp
}

// New returns a Matcher for addr, which should be the normalized address.
func New(addr string) (*Matcher, error) {
	if addr == "" || !utf8.ValidString(addr) || !strings.Contains(addr, "@") {
		return nil, errors.New("addrscrub: not an address")
	}
	var b strings.Builder
	b.WriteString("(?i)")
	for _, r := range addr {
		b.WriteString("(?:")
		b.WriteString(regexp.QuoteMeta(string(r)))
		b.WriteByte('|')
		var enc [utf8.UTFMax]byte
		for _, c := range enc[:utf8.EncodeRune(enc[:], r)] {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		b.WriteByte(')')
	}
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("addrscrub: compile pattern: %w", err)
	}
	return &Matcher{re: re}, nil
}

// Redact replaces every occurrence of the address in s and reports
// whether there was one. An occurrence inside a longer address
// (joann@example.com when erasing ann@example.com, or
// ann@example.com.au) is not the address and stays.
func (m *Matcher) Redact(s string) (string, bool) {
	locs := m.re.FindAllStringIndex(s, -1)
	if locs == nil {
		return s, false
	}
	var b strings.Builder
	last, found := 0, false
	for _, l := range locs {
		if !startsHere(s, l[0]) || !endsHere(s, l[1]) {
			continue
		}
		b.WriteString(s[last:l[0]])
		b.WriteString(Replacement)
		last, found = l[1], true
	}
	if !found {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// localChars, with letters and digits, continue an address's local part:
// a match preceded by one of them is the tail of a longer address. The
// other characters RFC 5322 allows there ("'", "=", "/", "?" …) are far
// more often the quote or the query separator before an address than part
// of one, so they count as boundaries: an erasure would rather scrub a
// little too much than leave the address.
const localChars = "._+-"

func startsHere(s string, i int) bool {
	if i == 0 {
		return true
	}
	// A percent-encoded character before it (%3C, "<"; %3A, ":") ends
	// whatever came before.
	if i >= 3 && s[i-3] == '%' && isHex(s[i-2]) && isHex(s[i-1]) {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(localChars, r))
}

func endsHere(s string, j int) bool {
	if j == len(s) {
		return true
	}
	r, n := utf8.DecodeRuneInString(s[j:])
	switch {
	case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-':
		return false
	case r == '.':
		// A trailing dot ends a sentence; a dot and more letters is a
		// longer domain.
		next, _ := utf8.DecodeRuneInString(s[j+n:])
		return !(unicode.IsLetter(next) || unicode.IsDigit(next))
	case r == '%' && j+2 < len(s) && isHex(s[j+1]) && isHex(s[j+2]):
		c := unhex(s[j+1])<<4 | unhex(s[j+2])
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.')
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// RedactJSON replaces the address in every string of a JSON document,
// keys included, at any depth, and reports whether it found one. The
// document's numbers are kept exactly; its formatting is not.
func (m *Matcher) RedactJSON(doc []byte) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, fmt.Errorf("addrscrub: decode document: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("addrscrub: trailing data after the document")
	}
	v, found := m.walk(v)
	if !found {
		return doc, false, nil
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false, fmt.Errorf("addrscrub: encode document: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true, nil
}

func (m *Matcher) walk(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		return m.Redact(x)
	case []any:
		found := false
		for i := range x {
			var f bool
			x[i], f = m.walk(x[i])
			found = found || f
		}
		return x, found
	case map[string]any:
		found := false
		out := make(map[string]any, len(x))
		for k, val := range x {
			nk, fk := m.Redact(k)
			nv, fv := m.walk(val)
			out[nk] = nv
			found = found || fk || fv
		}
		return out, found
	}
	return v, false
}
