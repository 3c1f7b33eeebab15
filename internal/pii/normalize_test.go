package pii_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/pii"
)

// TestNormalizeEmailOneIdentity holds every spelling of one mailbox to one
// normalized form: an erasure of one spelling must reach all of them.
func TestNormalizeEmailOneIdentity(t *testing.T) {
	cases := []struct {
		name  string
		forms []string
		want  string
	}{
		{"case and space", []string{"ann@example.com", "  Ann@Example.COM\t", "ANN@EXAMPLE.COM"}, "ann@example.com"},
		{"unicode and A-label domain", []string{"ann@bücher.example", "ann@BÜCHER.example", "ann@xn--bcher-kva.example", "ann@XN--BCHER-KVA.EXAMPLE"}, "ann@xn--bcher-kva.example"},
		{"NFC and NFD domain", []string{"ann@b\u00fccher.example", "ann@bu\u0308cher.example"}, "ann@xn--bcher-kva.example"},
		{"NFC and NFD local part", []string{"jos\u00e9@example.com", "jose\u0301@example.com", "JOSE\u0301@example.com", "JOS\u00c9@example.com"}, "jos\u00e9@example.com"},
		{"fullwidth domain letters", []string{"ann@example.com", "ann@ｅｘａｍｐｌｅ.com"}, "ann@example.com"},
		{"ideographic full stop", []string{"ann@example.com", "ann@example\u3002com"}, "ann@example.com"},
		{"CJK domain", []string{"ann@例え.jp", "ann@xn--r8jz45g.jp"}, "ann@xn--r8jz45g.jp"},
		{"sharp s stays itself (non-transitional)", []string{"ann@straße.de"}, "ann@xn--strae-oqa.de"},
		{"letter that grows when lowercased", []string{"\u023a@example.com"}, "\u2c65@example.com"},
		{"plus and dots kept", []string{"ann.b+news@example.com"}, "ann.b+news@example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, f := range c.forms {
				got, err := pii.NormalizeEmail(f)
				if err != nil || got != c.want {
					t.Errorf("NormalizeEmail(%+q) = %+q, %v; want %+q", f, got, err, c.want)
					continue
				}
				if again, err := pii.NormalizeEmail(got); err != nil || again != got {
					t.Errorf("NormalizeEmail(%+q) = %+q, %v: not idempotent", got, again, err)
				}
			}
		})
	}
}

// TestNormalizeEmailRefuses checks what is refused and with which error:
// hidden characters are refused, never silently dropped (dropping them would
// let an address look like another one).
func TestNormalizeEmailRefuses(t *testing.T) {
	cases := []struct {
		in   string
		want error
	}{
		{"", pii.ErrInvalidEmail},
		{"   ", pii.ErrInvalidEmail},
		{"ann", pii.ErrInvalidEmail},
		{"ann@", pii.ErrInvalidEmail},
		{"@example.com", pii.ErrInvalidEmail},
		{"ann@example", pii.ErrEmailDomain},
		{"ann@example.com.", pii.ErrEmailDomain},
		{"ann@example.c", pii.ErrEmailDomain},
		{"ann@192.0.2.1", pii.ErrEmailDomain},
		{"ann@.example.com", pii.ErrEmailDomain},
		{"ann@example..com", pii.ErrEmailDomain},
		{"ann@-example.com", pii.ErrEmailDomain},
		{"ann@ex_ample.com", pii.ErrEmailDomain},
		{"ann@xn--a.example", pii.ErrEmailDomain},    // an A-label that does not decode
		{"ann@xn--abc-.example", pii.ErrEmailDomain}, // an A-label of plain ASCII
		{"ann@" + strings.Repeat("a", 64) + ".com", pii.ErrEmailDomain},
		{"Ann <ann@example.com>", pii.ErrInvalidEmail},
		{"ann@example.com, bob@example.com", pii.ErrInvalidEmail},
		{`"ann"@example.com`, pii.ErrInvalidEmail},
		{"ann@[192.0.2.1]", pii.ErrInvalidEmail},
		{"ann(comment)@example.com", pii.ErrInvalidEmail},
		{"a@b@example.com", pii.ErrInvalidEmail},
		{strings.Repeat("a", 65) + "@example.com", pii.ErrInvalidEmail},
		{"ann@" + strings.Repeat("abcdefghij.", 23) + "com", pii.ErrInvalidEmail}, // 258 bytes
		{strings.Repeat("a", 2000) + "@example.com", pii.ErrInvalidEmail},
		{"ann\xff@example.com", pii.ErrEmailEncoding},
		{"ann\ufffd@example.com", pii.ErrEmailEncoding},
		{"\u201cann\u201d@example.com", pii.ErrInvalidEmail},
		{"\u300cann\u300d@example.com", pii.ErrInvalidEmail},
		{"ann@example.com\xc3", pii.ErrEmailEncoding},
		{"an\x00n@example.com", pii.ErrEmailControl},
		{"an\tn@example.com", pii.ErrEmailControl},
		{"ann@exa\nmple.com", pii.ErrEmailControl},
		{"ann\u0085@example.com", pii.ErrEmailControl},
		{"ann\u007f@example.com", pii.ErrEmailControl},
		{"an\u200bn@example.com", pii.ErrEmailInvisible},     // zero width space
		{"ann@exa\u200bmple.com", pii.ErrEmailInvisible},     // in the domain, where IDNA would drop it
		{"ann@exam\u00adple.com", pii.ErrEmailInvisible},     // soft hyphen, which IDNA maps to nothing
		{"an\u200cn@example.com", pii.ErrEmailInvisible},     // zero width non-joiner
		{"an\u200dn@example.com", pii.ErrEmailInvisible},     // zero width joiner
		{"\u200eann@example.com", pii.ErrEmailInvisible},     // left-to-right mark
		{"ann\u200f@example.com", pii.ErrEmailInvisible},     // right-to-left mark
		{"\u202eann@example.com", pii.ErrEmailInvisible},     // right-to-left override
		{"ann\u202a@example.com", pii.ErrEmailInvisible},     // left-to-right embedding
		{"ann@example.com\u2066", pii.ErrEmailInvisible},     // left-to-right isolate
		{"ann\u2069@example.com", pii.ErrEmailInvisible},     // pop directional isolate
		{"\ufeffann@example.com", pii.ErrEmailInvisible},     // byte-order mark
		{"ann\u2060@example.com", pii.ErrEmailInvisible},     // word joiner
		{"ann\u180e@example.com", pii.ErrEmailInvisible},     // Mongolian vowel separator
		{"ann\u034f@example.com", pii.ErrEmailInvisible},     // combining grapheme joiner
		{"ann\u3164@example.com", pii.ErrEmailInvisible},     // Hangul filler
		{"ann\ufe0f@example.com", pii.ErrEmailInvisible},     // variation selector
		{"an\u00a0n@example.com", pii.ErrEmailInvisible},     // no-break space inside
		{"an\u3000n@example.com", pii.ErrEmailInvisible},     // ideographic space inside
		{"ann\u2028@example.com", pii.ErrEmailInvisible},     // line separator
		{"ann\ue000@example.com", pii.ErrEmailInvisible},     // private use
		{"ann\U000e0041@example.com", pii.ErrEmailInvisible}, // tag character
		{"ann\ufdd0@example.com", pii.ErrEmailInvisible},     // noncharacter
	}
	for _, c := range cases {
		got, err := pii.NormalizeEmail(c.in)
		if !errors.Is(err, c.want) || got != "" {
			t.Errorf("NormalizeEmail(%+q) = %+q, %v; want error %v", c.in, got, err, c.want)
		}
		if err != nil && !errors.Is(err, pii.ErrInvalidEmail) {
			t.Errorf("NormalizeEmail(%+q): %v does not wrap ErrInvalidEmail", c.in, err)
		}
		if err != nil && len(c.in) > 3 && strings.Contains(err.Error(), c.in[1:len(c.in)-1]) {
			t.Errorf("NormalizeEmail(%+q): error %q quotes the input", c.in, err)
		}
	}
}
