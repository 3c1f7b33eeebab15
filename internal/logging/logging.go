// Package logging builds the service's structured logger. Redaction lives
// here, in one ReplaceAttr, rather than at call sites: an attribute whose
// key names a secret is dropped to "[redacted]", and any string value is
// scrubbed of email addresses, IP addresses, bearer tokens and URL
// credentials, so that a wrapped driver error cannot carry them into Fly's
// logs either.
package logging

import (
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
)

// Log keys used across the service.
const (
	KeyErr    = "err"
	KeyRoute  = "route"
	KeyStatus = "status"
)

// Redacted replaces anything the logger must not print.
const Redacted = "[redacted]"

// sensitiveWords are words that, as one word of an attribute key
// ("email", "admin_token", "client-ip"), mark its value as never logged.
var sensitiveWords = map[string]bool{
	"email": true, "password": true, "passwd": true, "secret": true, "token": true,
	"pepper": true, "authorization": true, "auth": true, "cookie": true, "dsn": true,
	"url": true, "ip": true, "key": true, "name": true, "phone": true,
}

var (
	// emailRe takes every character RFC 5322 allows in a local part, and
	// letters of any script (RFC 6531): a narrower class leaves part of an
	// address behind ("o'" of o'brien@…, all of josé@…).
	emailRe = regexp.MustCompile(`[\p{L}\p{M}\p{N}!#$%&'*+/=?^_\x60{|}~.\-]+@[\p{L}\p{M}\p{N}.\-]+\.[\p{L}\p{M}\p{N}\-]{2,}`)
	ipv4Re  = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)
	// ipv6Re takes a whole run of hex groups and colons, so that a
	// compressed address is judged as one ("2001:db8::1", not "2001:db8"
	// and a loopback-looking "::1").
	ipv6Re   = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,8}`)
	userInfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]+@`)
	bearerRe = regexp.MustCompile(`(?i)(bearer\s+)\S+`)
	tokenQS  = regexp.MustCompile(`(?i)((?:token|key|secret|password)=)[^&\s"]+`)
)

// Scrub removes emails, IP addresses, URL credentials and tokens from s.
func Scrub(s string) string {
	if s == "" {
		return s
	}
	s = userInfo.ReplaceAllString(s, "${1}"+Redacted+"@")
	s = bearerRe.ReplaceAllString(s, "${1}"+Redacted)
	s = tokenQS.ReplaceAllString(s, "${1}"+Redacted)
	s = emailRe.ReplaceAllString(s, Redacted)
	s = ipv4Re.ReplaceAllStringFunc(s, keepLocal)
	s = ipv6Re.ReplaceAllStringFunc(s, keepLocal)
	return s
}

// keepLocal redacts an address unless it is loopback or unspecified: those
// name this machine's own listeners, never a client.
func keepLocal(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && (a.IsLoopback() || a.IsUnspecified()) {
		return s
	}
	return Redacted
}

func sensitive(key string) bool {
	for _, w := range strings.FieldsFunc(strings.ToLower(key), func(r rune) bool {
		return r == '_' || r == '-' || r == '.' || r == ' '
	}) {
		if sensitiveWords[w] {
			return true
		}
	}
	return false
}

// replace is the one redaction point for every record.
func replace(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
		return a
	}
	if a.Key != slog.MessageKey && sensitive(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Scrub(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, Scrub(err.Error()))
		}
		if s, ok := v.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, Scrub(s.String()))
		}
		// Anything else could print fields we cannot see; say what it was.
		return slog.String(a.Key, Redacted)
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// New returns a JSON logger that redacts as described in the package doc.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: replace}))
}
