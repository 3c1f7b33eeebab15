package mail

import (
	"errors"
	"fmt"
	"html"
	netmail "net/mail"
	"net/url"
	"strings"
)

// Draft is everything Compose needs for one message.
type Draft struct {
	Kind Kind
	// JobID identifies the job the message belongs to: letters, digits,
	// '-' and '_', at most 64. It names the Message-ID and the idempotency
	// key, so every attempt of one job is recognisable as the same message.
	JobID string
	// From is the sender's address (ParseFrom reads MAILSLOT_MAIL_FROM);
	// its domain ends the Message-ID.
	From netmail.Address
	// To is the recipient; the name may be empty.
	To netmail.Address
	// Property is the property's name as the recipient knows it.
	Property string
	// ConfirmURL is the signed confirm link, for a confirmation only.
	ConfirmURL string
	// UnsubscribeURL is the signed unsubscribe link, the target of the
	// RFC 8058 one-click POST: https (http only on a loopback host, for
	// development).
	UnsubscribeURL string
	Sender         Sender
	// Templates are the property's; nil means the built-in defaults.
	Templates *Templates
}

// Message is a composed message, ready for any Transport. Compose makes
// it; its fields are exported for the transports and for inspection.
type Message struct {
	Kind Kind
	// MessageID is "<mailslot.{kind}.{job id}@{from domain}>", the same
	// for every attempt of one job.
	MessageID string
	// IdempotencyKey is what an HTTP API deduplicates retries on.
	IdempotencyKey string
	From, To       netmail.Address
	Subject        string
	Text, HTML     string
	// ListUnsubscribe is the header value "<{unsubscribe URL}>";
	// ListUnsubscribePost is "List-Unsubscribe=One-Click" (RFC 8058).
	ListUnsubscribe     string
	ListUnsubscribePost string
}

const oneClick = "List-Unsubscribe=One-Click"

// Compose renders a message from d. The text and HTML bodies are the
// templates' output followed by the sender identification block and the
// unsubscribe link; errors name the field at fault and never carry the
// recipient's address.
func Compose(d Draft) (*Message, error) {
	if !d.Kind.valid() {
		return nil, fmt.Errorf("compose: unknown message kind %q", d.Kind)
	}
	if err := checkJobID(d.JobID); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	domain := addressDomain(d.From.Address)
	if domain == "" || !validAddress(d.From.Address) {
		return nil, errors.New("compose: the from address is not a valid address")
	}
	if !validAddress(d.To.Address) {
		return nil, errors.New("compose: the recipient's address is not a valid address")
	}
	if strings.ContainsAny(d.From.Name, "\r\n") || strings.ContainsAny(d.To.Name, "\r\n") {
		return nil, errors.New("compose: a display name holds a line break")
	}
	if strings.TrimSpace(d.Property) == "" {
		return nil, errors.New("compose: the property name is empty")
	}
	if err := d.Sender.Validate(); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	if err := checkLink(d.UnsubscribeURL); err != nil {
		return nil, fmt.Errorf("compose: unsubscribe URL: %w", err)
	}
	switch {
	case d.Kind == Confirmation:
		if err := checkLink(d.ConfirmURL); err != nil {
			return nil, fmt.Errorf("compose: confirm URL: %w", err)
		}
	case d.ConfirmURL != "":
		return nil, fmt.Errorf("compose: a %s carries no confirm URL", d.Kind)
	}

	tpl := d.Templates
	if tpl == nil {
		tpl = defaultTemplates
	}
	kt, err := tpl.kind(d.Kind)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	common := commonData{
		Property:       d.Property,
		RecipientName:  d.To.Name,
		SenderName:     d.Sender.Name,
		UnsubscribeURL: d.UnsubscribeURL,
	}
	var data any = common
	if d.Kind == Confirmation {
		data = confirmationData{common, d.ConfirmURL}
	}
	subject, text, body, err := kt.render(d.Kind, data)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	if subject == "" {
		return nil, fmt.Errorf("compose: the %s subject is empty", d.Kind)
	}

	m := &Message{
		Kind:                d.Kind,
		MessageID:           "<mailslot." + string(d.Kind) + "." + d.JobID + "@" + domain + ">",
		IdempotencyKey:      "mailslot-" + string(d.Kind) + "/" + d.JobID,
		From:                d.From,
		To:                  d.To,
		Subject:             subject,
		Text:                textWithFooter(text, d),
		HTML:                htmlDocument(subject, body, d),
		ListUnsubscribe:     "<" + d.UnsubscribeURL + ">",
		ListUnsubscribePost: oneClick,
	}
	return m, nil
}

func checkJobID(id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("job id: give 1 to 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errors.New("job id: use letters, digits, '-' and '_' only")
		}
	}
	return nil
}

// validAddress reports whether addr is a bare addr-spec net/mail accepts.
func validAddress(addr string) bool {
	if addr == "" || strings.ContainsAny(addr, "<>\r\n ") {
		return false
	}
	a, err := netmail.ParseAddress(addr)
	return err == nil && a.Address == addr && addressDomain(addr) != ""
}

// checkLink accepts an absolute https URL, or http on a loopback host, that
// can stand inside the angle brackets of a List-Unsubscribe header.
func checkLink(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > 2000 {
		return errors.New("longer than 2000 characters")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			return errors.New("holds a space, a control, a quote, an angle bracket or a non-ASCII character")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Host == "":
		return errors.New("not an absolute URL")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return errors.New("use https (http only on a loopback host)")
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.")
}

// textWithFooter appends the signature separator, the sender
// identification and the unsubscribe link to the text body.
func textWithFooter(text string, d Draft) string {
	var b strings.Builder
	b.Grow(len(text) + 256 + len(d.Sender.PostalAddress) + len(d.UnsubscribeURL))
	b.WriteString(strings.TrimRight(text, "\r\n\t "))
	b.WriteString("\n\n-- \n")
	b.WriteString(d.Sender.Name)
	b.WriteByte('\n')
	b.WriteString(strings.TrimSpace(d.Sender.PostalAddress))
	b.WriteString("\nContact: ")
	b.WriteString(d.Sender.Contact)
	b.WriteString("\n\nYou receive this message because this address was signed up at ")
	b.WriteString(d.Property)
	b.WriteString(".\nUnsubscribe: ")
	b.WriteString(d.UnsubscribeURL)
	b.WriteByte('\n')
	return b.String()
}

// htmlDocument wraps the template's body content in a document and adds
// the same footer as the text part.
func htmlDocument(subject, body string, d Draft) string {
	const small = `style="font-size:12px;color:#555"`
	var b strings.Builder
	b.Grow(len(body) + 768 + len(d.Sender.PostalAddress) + len(d.UnsubscribeURL))
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<title>")
	b.WriteString(html.EscapeString(subject))
	b.WriteString("</title>\n</head>\n<body style=\"font-family:sans-serif;line-height:1.5;max-width:36em\">\n")
	b.WriteString(body)
	b.WriteString("\n<hr>\n<p " + small + ">")
	b.WriteString(html.EscapeString(d.Sender.Name))
	for _, line := range strings.Split(strings.TrimSpace(d.Sender.PostalAddress), "\n") {
		b.WriteString("<br>")
		b.WriteString(html.EscapeString(strings.TrimSpace(line)))
	}
	b.WriteString("<br>Contact: ")
	b.WriteString(html.EscapeString(d.Sender.Contact))
	b.WriteString("</p>\n<p " + small + ">You receive this message because this address was signed up at ")
	b.WriteString(html.EscapeString(d.Property))
	b.WriteString(". <a href=\"")
	b.WriteString(html.EscapeString(d.UnsubscribeURL))
	b.WriteString("\">Unsubscribe</a></p>\n</body>\n</html>\n")
	return b.String()
}
