package pii_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailslot/mailslot/internal/pii"
)

// TestRedactEmails holds RedactEmails to replacing the address and nothing
// around it, however it is wrapped or encoded.
func TestRedactEmails(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ann@example.com", "[email]"},
		{"https://x/?e=ann@example.com", "https://x/?e=[email]"},
		{"https://x/?e=ann@example.com&p=1#top", "https://x/?e=[email]&p=1#top"},
		{"https://x/p?a=1&e=ann%40example.com", "https://x/p?a=1&e=[email]"},
		{"https://x/p?e=ann%2540example.com", "https://x/p?e=[email]"},
		{"https://x/p?e=%61%6E%6E%40%65%78%61%6D%70%6C%65%2E%63%6F%6D&z=1", "https://x/p?e=[email]&z=1"},
		{"https://x/p?e=%61nn@example.com", "https://x/p?e=[email]"},
		{"?e=ann%2Bnews%40example.com", "?e=[email]"},
		{"?e=ann+news@example.com", "?e=[email]"},
		{"e%3Dann%40example.com", "e%3D[email]"},
		{"mailto:ann@example.com", "mailto:[email]"},
		{"mailto:ann@example.com?subject=hi", "mailto:[email]?subject=hi"},
		{"Ann <ann@example.com>", "Ann <[email]>"},
		{"[ann@example.com]", "[[email]]"},
		{"(ann@example.com)", "([email])"},
		{`"ann@example.com"`, `"[email]"`},
		{"'ann@example.com'", "'[email]'"},
		{"write to ann@example.com.", "write to [email]."},
		{"ann@example.com, bob@example.org; cy@example.net", "[email], [email]; [email]"},
		{"o'brien@example.ie", "[email]"},
		{"ann@bücher.example", "[email]"},
		{"ann@xn--bcher-kva.example/path", "[email]/path"},
		{"jos%C3%A9%40b%C3%BCcher.example", "[email]"},
		{"ann@例え。jp", "[email]"},
		{"ann@example.com.123", "[email].123"},
		{"\u201cann@example.com\u201d", "\u201c[email]\u201d"},
		{"«ann@example.com»", "«[email]»"},
		{"\u0701@0.0a", "[email]"},
		{"'@example.com", "[email]"},
		{"ann@example.com-", "[email]-"},
		{"utm_term=ann@example.com", "utm_term=[email]"},
		{"a/b=@example.com", "a/[email]"},
		{"?e=ann=@example.com", "?e=[email]"},
		// Not addresses: nothing changes.
		{"https://x/@ann", "https://x/@ann"},
		{"@scope/pkg@1.2.3", "@scope/pkg@1.2.3"},
		{"ann@localhost", "ann@localhost"},
		{"ann@example.c", "ann@example.c"},
		{"100%", "100%"},
		{"%40", "%40"},
		{"%zz%4", "%zz%4"},
		{"a @ b.com", "a @ b.com"},
	}
	for _, c := range cases {
		if got := pii.RedactEmails(c.in); got != c.want {
			t.Errorf("RedactEmails(%q) = %q, want %q", c.in, got, c.want)
		}
		if got, want := pii.ContainsEmail(c.in), c.in != c.want; got != want {
			t.Errorf("ContainsEmail(%q) = %v, want %v", c.in, got, want)
		}
	}
}

// wraps are the ways an address turns up inside other text.
var wraps = []string{
	"%s", "mailto:%s", "<%s>", "[%s]", "(%s)", `"%s"`, "'%s'", "%s.", "%s,",
	"https://x.example/?e=%s", "https://x.example/?a=1&e=%s&b=2", "?q=hi+%s", "e=%s#f",
	"Ann <%s>", "{\"email\":\"%s\"}", "\t%s\n",
}

// encodings are the ways an address is encoded where it turns up.
var encodings = []func(local, domain string) string{
	func(l, d string) string { return l + "@" + d },
	func(l, d string) string { return l + "%40" + d },
	func(l, d string) string { return l + "%2540" + d },
	func(l, d string) string { return percentAll(l) + "%40" + percentAll(d) },
	func(l, d string) string { return percentAll(l) + "@" + d },
	func(l, d string) string { return strings.ReplaceAll(l, "+", "%2B") + "%40" + d },
	func(l, d string) string { return strings.ToUpper(l) + "@" + strings.ToUpper(d) },
}

func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

var domains = []string{"example.com", "bücher.example", "xn--bcher-kva.example", "例え.jp", "mail.example.co.uk", "x1.io"}

// fuzzLocal makes a valid local part out of fuzzed bytes.
func fuzzLocal(b string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._+-éü"
	var l []rune
	for i := 0; i < len(b) && len(l) < 20; i++ {
		l = append(l, []rune(alphabet)[int(b[i])%utf8.RuneCountInString(alphabet)])
	}
	local := strings.Trim(string(l), ".")
	if local == "" || strings.Contains(local, "..") {
		local = "ann"
	}
	return local
}

func FuzzEmailsFound(f *testing.F) {
	f.Add("see ", " now", "ann", uint8(0), uint8(0), uint8(0))
	f.Add("%", "%2E", "40x", uint8(3), uint8(1), uint8(2))
	f.Add("\xe2\x80", "\u0301", "a.b+c", uint8(9), uint8(3), uint8(3))
	f.Add("%25", "-.123", "2e2f", uint8(12), uint8(4), uint8(1))
	f.Fuzz(func(t *testing.T, prefix, suffix, localBytes string, wrap, enc, dom uint8) {
		if len(prefix)+len(suffix) > 4096 {
			return
		}
		local := fuzzLocal(localBytes)
		domain := domains[int(dom)%len(domains)]
		if _, err := pii.NormalizeEmail(local + "@" + domain); err != nil {
			t.Fatalf("test setup: %s@%s is not an address: %v", local, domain, err)
		}
		addr := encodings[int(enc)%len(encodings)](local, domain)
		in := prefix + fmt.Sprintf(wraps[int(wrap)%len(wraps)], addr) + suffix
		if !pii.ContainsEmail(in) {
			t.Fatalf("ContainsEmail(%q) = false", in)
		}
		out := pii.RedactEmails(in)
		if !strings.Contains(out, pii.EmailRedacted) {
			t.Fatalf("RedactEmails(%q) = %q, nothing redacted", in, out)
		}
		// With the address the only at sign in the input, none may be
		// left in any form.
		clean := func(s string) string { return strings.NewReplacer("@", "", "%", "").Replace(s) }
		in = clean(prefix) + fmt.Sprintf(wraps[int(wrap)%len(wraps)], addr) + clean(suffix)
		out = pii.RedactEmails(in)
		if strings.Contains(out, "@") || strings.Contains(strings.ToLower(out), "%40") || strings.Contains(out, "%2540") {
			t.Fatalf("RedactEmails(%q) = %q: the address's at sign is still there", in, out)
		}
		if pii.ContainsEmail(out) {
			t.Fatalf("RedactEmails(%q) = %q, which still holds an address", in, out)
		}
	})
}

// FuzzRedactEmails holds RedactEmails to three promises on any input: what
// it returns holds no address, is valid UTF-8 where the input was, and
// keeps the input unchanged when ContainsEmail finds nothing.
func FuzzRedactEmails(f *testing.F) {
	for _, s := range []string{"ann@example.com", "a@b.cc@d.ee", "x@[y@z.com]", "%61@b.cc", "@@a.bc", "a%2540%40b.cc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := pii.RedactEmails(s)
		if pii.ContainsEmail(out) {
			t.Fatalf("RedactEmails(%q) = %q, which still holds an address", s, out)
		}
		if !pii.ContainsEmail(s) && out != s {
			t.Fatalf("RedactEmails(%q) = %q though ContainsEmail found nothing", s, out)
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("RedactEmails(%q) = %q, not valid UTF-8", s, out)
		}
	})
}

// FuzzNormalizeEmail holds NormalizeEmail to being idempotent and to
// storing no hidden character.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"ann@example.com", "Jose\u0301@BÜCHER.example", "ann@xn--bcher-kva.example", "\u023a@例え.jp", "a\u200b@b.cc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := pii.NormalizeEmail(s)
		if err != nil {
			return
		}
		if again, err := pii.NormalizeEmail(n); err != nil || again != n {
			t.Fatalf("NormalizeEmail(%q) = %q, which normalizes to %q, %v", s, n, again, err)
		}
		if len(n) > pii.MaxEmailLen || !pii.ContainsEmail(n) {
			t.Fatalf("NormalizeEmail(%q) = %q: too long, or not found as an address", s, n)
		}
	})
}

// BenchmarkRedactEmails runs inputs built to make a backtracking matcher
// quadratic at three sizes; the time per byte should stay flat.
func BenchmarkRedactEmails(b *testing.B) {
	shapes := map[string]string{
		"at signs":     "a@",
		"dotted local": "a.",
		"label run":    "@a.b",
		"escapes":      "%40a%2E",
		"url":          "https://x.example/?e=ann@example.com&",
	}
	for name, unit := range shapes {
		for _, n := range []int{1 << 10, 1 << 14, 1 << 18} {
			s := strings.Repeat(unit, n/len(unit))
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				b.SetBytes(int64(len(s)))
				for b.Loop() {
					pii.RedactEmails(s)
				}
			})
		}
	}
}
