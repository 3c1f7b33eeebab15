package pii

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// EmailRedacted is what RedactEmails puts in place of an address.
const EmailRedacted = "[email]"

// ContainsEmail reports whether s holds something shaped like an email
// address anywhere inside it: bare, wrapped (mailto:, <…>, brackets,
// quotes, a trailing dot), inside a URL's query string, percent-encoded in
// part or in full (ann%40example.com, %61nn%40…, ann%2540… encoded twice),
// or with a Unicode domain. Telemetry and attribution fields use it to
// refuse or redact addresses that an erasure would otherwise have to chase.
//
// It looks for shape, not validity: "ann@example.co" is found even if no
// such mailbox exists. Work is linear in len(s).
func ContainsEmail(s string) bool {
	if !mayHoldEmail(s) {
		return false
	}
	found := false
	stop := func(int, int) bool { found = true; return false }
	scanEmails(rawUnits(s), stop)
	if !found {
		scanEmails(decodedUnits(s), stop)
	}
	return found
}

// RedactEmails replaces every address ContainsEmail would find with
// EmailRedacted and leaves everything around it as it was:
// "https://x/?e=ann@example.com&p=1" becomes "https://x/?e=[email]&p=1".
// An address written in percent-encoding is replaced whole, escapes and
// all. Work is linear in len(s).
func RedactEmails(s string) string {
	if !mayHoldEmail(s) {
		return s
	}
	var spans []span
	add := func(start, end int) bool { spans = append(spans, span{start, end}); return true }
	scanEmails(rawUnits(s), add)
	n := len(spans)
	scanEmails(decodedUnits(s), add)
	if len(spans) == 0 {
		return s
	}
	spans = mergeSpans(spans[:n], spans[n:])
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(EmailRedacted)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// mayHoldEmail is the fast path: most values have no at sign in any form.
func mayHoldEmail(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@':
			return true
		case '%':
			if hasFoldPrefix(s[i+1:], "40") || hasFoldPrefix(s[i+1:], "2540") {
				return true
			}
		}
	}
	return false
}

func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// A unit is one character of a view of the input, with the bytes of the
// input it stands for.
type unit struct {
	r          rune
	start, end int
}

type span struct{ start, end int }

// rawUnits is the input as written.
func rawUnits(s string) []unit {
	u := make([]unit, 0, len(s))
	for i, r := range s {
		_, size := utf8.DecodeRuneInString(s[i:])
		u = append(u, unit{r, i, i + size})
	}
	return u
}

// decodedUnits is the input with percent-escapes decoded (once, or twice
// for %25XX), a multi-byte character counting as one unit that spans its
// escapes. An escape that does not decode to a whole UTF-8 character is
// left as the literal '%' it starts with; the raw view covers the rest.
func decodedUnits(s string) []unit {
	u := make([]unit, 0, len(s))
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(s); {
		if s[i] == '%' {
			n, j := 0, i
			for n < len(buf) {
				b, w, ok := unescape(s[j:])
				if !ok {
					break
				}
				buf[n], n, j = b, n+1, j+w
				if utf8.FullRune(buf[:n]) {
					break
				}
			}
			if n > 0 {
				if r, size := utf8.DecodeRune(buf[:n]); size == n && (r != utf8.RuneError || n == 3) {
					u = append(u, unit{r, i, j})
					i = j
					continue
				}
			}
			u = append(u, unit{'%', i, i + 1})
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		u = append(u, unit{r, i, i + size})
		i += size
	}
	return u
}

// unescape decodes one escape at the start of s: "%XX", or "%25XX" (an
// escape that was itself escaped).
func unescape(s string) (b byte, width int, ok bool) {
	if len(s) < 3 || s[0] != '%' || !isHex(s[1]) || !isHex(s[2]) {
		return 0, 0, false
	}
	b = unhex(s[1])<<4 | unhex(s[2])
	if b == '%' && len(s) >= 5 && isHex(s[3]) && isHex(s[4]) {
		return unhex(s[3])<<4 | unhex(s[4]), 5, true
	}
	return b, 3, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// scanEmails calls found with the input span of every address in u, in
// order, until found returns false. Each unit is looked at a bounded number
// of times: the local part is read leftwards and the domain rightwards
// from an at sign, and neither crosses another at sign.
func scanEmails(u []unit, found func(start, end int) bool) {
	for k := range u {
		if u[k].r != '@' {
			continue
		}
		i := k
		// RFC 5322 lets a local part end in delimiters of URLs and query
		// strings ("ann=@…"); take them only right before the at sign.
		for i > 0 && isAtext(u[i-1].r) && !isLocalRune(u[i-1].r) {
			i--
		}
		for i > 0 && isLocalRune(u[i-1].r) {
			i--
		}
		// A dot cannot start a local part, and a quote before one is
		// almost always a wrapper ('ann@example.com'), not the address.
		for i+1 < k && (u[i].r == '.' || u[i].r == '\'') {
			i++
		}
		if i == k || u[i].r == '.' {
			continue
		}
		end := domainEnd(u, k+1)
		if end < 0 {
			continue
		}
		if !found(u[i].start, u[end-1].end) {
			return
		}
	}
}

// isLocalRune reports whether r may be part of a local part as it appears
// in text. RFC 5322 also allows / = ? & # { | } `, but in URLs and query
// strings those delimit what is around the address (?e=ann@…), and an
// address that holds one is still found from the character after it.
func isLocalRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("!$%'*+-.^_~", r)
	}
	return isWordRune(r)
}

// isWordRune reports whether a non-ASCII r may be part of an address:
// anything NormalizeEmail keeps in a local part, and anything IDNA may
// map into a valid label, which is everything but spaces, controls,
// invisible characters, brackets and quotation marks.
func isWordRune(r rune) bool {
	return r != utf8.RuneError && !unicode.In(r, unicode.Z, unicode.C, unicode.Ps, unicode.Pe, unicode.Pi, unicode.Pf)
}

// isAtext reports whether r is RFC 5322 atext, or a dot.
func isAtext(r rune) bool {
	return isLocalRune(r) || strings.ContainsRune("/=?&#{|}`", r)
}

// isLabelRune reports whether r may be part of a domain label, in its
// Unicode or its ASCII form.
func isLabelRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-'
	}
	return !isDomainDot(r) && isWordRune(r)
}

// isDomainDot reports whether r separates labels: IDNA maps the
// ideographic and fullwidth full stops to '.'.
func isDomainDot(r rune) bool {
	return r == '.' || r == '\u3002' || r == '\uff0e' || r == '\uff61'
}

// domainEnd returns the index after the last unit of the domain starting
// at u[j], or -1 if there is none: at least two labels, the last of which
// (the top-level domain) has two characters or more, starts with a letter
// or digit and holds a letter. Trailing dots and hyphens, and labels after
// the last plausible top-level domain ("example.com.123"), are not part of
// it.
func domainEnd(u []unit, j int) int {
	if j >= len(u) || u[j].r == '-' || !isLabelRune(u[j].r) {
		return -1
	}
	end, labels := -1, 0
	for p := j; ; {
		q := p
		letter := false
		for q < len(u) && isLabelRune(u[q].r) {
			letter = letter || unicode.IsLetter(u[q].r)
			q++
		}
		if q == p {
			break // an empty label: ".." or a trailing dot
		}
		labels++
		t := q
		for t > p && u[t-1].r == '-' {
			t--
		}
		if labels >= 2 && t-p >= 2 && u[p].r != '-' && letter {
			end = t
		}
		if q == len(u) || !isDomainDot(u[q].r) {
			break
		}
		p = q + 1
	}
	return end
}

// mergeSpans merges two sorted lists of spans into one sorted list of
// disjoint spans.
func mergeSpans(a, b []span) []span {
	out := make([]span, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		var next span
		if len(b) == 0 || len(a) > 0 && a[0].start <= b[0].start {
			next, a = a[0], a[1:]
		} else {
			next, b = b[0], b[1:]
		}
		if n := len(out); n > 0 && next.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, next.end)
			continue
		}
		out = append(out, next)
	}
	return out
}
