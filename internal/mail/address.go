package mail

import (
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
)

// ParseFrom reads the MAILSLOT_MAIL_FROM value, "Name <address>" or a bare
// address. The address's domain names the Message-IDs the composer makes,
// so it must have one.
func ParseFrom(s string) (netmail.Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netmail.Address{}, errors.New("mail from: empty; use \"Name <address>\"")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return netmail.Address{}, fmt.Errorf("mail from: %w; use \"Name <address>\"", err)
	}
	if addressDomain(a.Address) == "" {
		return netmail.Address{}, errors.New("mail from: the address has no domain")
	}
	return *a, nil
}

// addressDomain is the lowercased part after the last @, or "".
func addressDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// formatAddressUTF8 writes an address as "Name <address>" with the name
// in UTF-8 (quoted when it holds specials), for APIs that take JSON
// rather than RFC 2047 encoded words.
func formatAddressUTF8(a netmail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	var b strings.Builder
	b.Grow(len(a.Name) + len(a.Address) + 5)
	if needsQuoting(a.Name) {
		b.WriteByte('"')
		for i := 0; i < len(a.Name); i++ {
			c := a.Name[i]
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	} else {
		b.WriteString(a.Name)
	}
	b.WriteString(" <")
	b.WriteString(a.Address)
	b.WriteByte('>')
	return b.String()
}

// needsQuoting reports whether name holds anything besides RFC 5322 atext
// and spaces (UTF-8 letters count as atext, RFC 6532).
func needsQuoting(name string) bool {
	for _, r := range name {
		switch {
		case r >= 0x80, r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(" !#$%&'*+-/=?^_`{|}~", r):
		default:
			return true
		}
	}
	return false
}
