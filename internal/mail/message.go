package mail

import (
	"fmt"
	"io"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// goMail renders m for SMTP: multipart/alternative (text first, then
// HTML, as RFC 2046 orders them), quoted-printable bodies, RFC 2047
// encoded names and subject, and the job's Message-ID.
func (m *Message) goMail() (*gomail.Msg, error) {
	g := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	from, to := m.From, m.To
	g.FromMailAddress(&from)
	g.AddToMailAddress(&to)
	g.Subject(m.Subject)
	g.SetMessageIDWithValue(strings.TrimSuffix(strings.TrimPrefix(m.MessageID, "<"), ">"))
	g.SetDate()
	g.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, m.ListUnsubscribe)
	g.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribePost, m.ListUnsubscribePost)
	// RFC 3834: no vacation replies to a message a sign-up triggered.
	g.SetGenHeaderPreformatted(gomail.Header("Auto-Submitted"), "auto-generated")
	g.SetBodyString(gomail.TypeTextPlain, m.Text)
	g.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	if _, err := g.GetSender(false); err != nil {
		return nil, fmt.Errorf("render message: %w", err)
	}
	return g, nil
}

// WriteTo writes m as an RFC 5322 message, as the SMTP transport sends it
// (with a Date of now).
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	g, err := m.goMail()
	if err != nil {
		return 0, err
	}
	return g.WriteTo(w)
}
