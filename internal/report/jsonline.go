package report

import (
	"time"
	"unicode/utf8"
)

// appendJSONLine appends l as one JSON object and a newline, with the keys
// of ExportedLead's tags in its field order. It is what encoding/json
// would write (without its HTML escaping of <, > and &, which a JSON-lines
// file has no use for), built by hand because reflection and time's
// MarshalJSON were half of an export's CPU: a million-lead export is the
// one place where it shows.
func appendJSONLine(b []byte, l *ExportedLead) []byte {
	b = append(b, `{"email":`...)
	b = appendJSONString(b, l.Email)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, l.Name)
	b = append(b, `,"property":`...)
	b = appendJSONString(b, l.Property)
	b = append(b, `,"consent_status":`...)
	b = appendJSONString(b, l.ConsentStatus)
	b = append(b, `,"consent_basis":`...)
	b = appendJSONString(b, l.ConsentBasis)
	b = append(b, `,"confirmed_at":`...)
	b = appendJSONTime(b, l.ConfirmedAt)
	b = append(b, `,"express_at":`...)
	b = appendJSONTime(b, l.ExpressAt)
	b = append(b, `,"implied_at":`...)
	b = appendJSONTime(b, l.ImpliedAt)
	b = append(b, `,"withdrawn_at":`...)
	b = appendJSONTime(b, l.WithdrawnAt)
	b = append(b, `,"first_source":`...)
	b = appendJSONString(b, l.FirstSource)
	b = append(b, `,"first_medium":`...)
	b = appendJSONString(b, l.FirstMedium)
	b = append(b, `,"first_campaign":`...)
	b = appendJSONString(b, l.FirstCampaign)
	b = append(b, `,"first_page":`...)
	b = appendJSONString(b, l.FirstPage)
	b = append(b, `,"last_source":`...)
	b = appendJSONString(b, l.LastSource)
	b = append(b, `,"last_medium":`...)
	b = appendJSONString(b, l.LastMedium)
	b = append(b, `,"last_campaign":`...)
	b = appendJSONString(b, l.LastCampaign)
	b = append(b, `,"last_page":`...)
	b = appendJSONString(b, l.LastPage)
	b = append(b, `,"first_seen_at":`...)
	b = appendJSONTime(b, &l.FirstSeenAt)
	b = append(b, `,"last_seen_at":`...)
	b = appendJSONTime(b, &l.LastSeenAt)
	return append(b, "}\n"...)
}

// appendJSONTime writes t as encoding/json does (RFC 3339 with as many
// fraction digits as it needs), or null.
func appendJSONTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD, and U+2028 and
// U+2029 escaped so that the line is also valid JavaScript, as
// encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
