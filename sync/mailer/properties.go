package mailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailslot/mailslot/internal/mail"
)

// Property is one property's mail settings (mailslot.properties). Empty
// strings mean the fleet default.
type Property struct {
	Property            string               `json:"property"`
	DisplayName         string               `json:"display_name,omitempty"`
	MailFrom            string               `json:"mail_from,omitempty"`
	SenderName          string               `json:"sender_name,omitempty"`
	SenderPostalAddress string               `json:"sender_postal_address,omitempty"`
	SenderContact       string               `json:"sender_contact,omitempty"`
	DoubleOptIn         bool                 `json:"double_opt_in"`
	Welcome             bool                 `json:"welcome"`
	Templates           mail.TemplateSources `json:"templates"`
	UpdatedAt           time.Time            `json:"updated_at"`
}

// DefaultProperty is what a property without a row gets.
func DefaultProperty(name string) Property {
	return Property{Property: name, DoubleOptIn: true}
}

// templatesJSON is how template sources are stored: only the fields set.
type templatesJSON struct {
	Confirmation *sourceJSON `json:"confirmation,omitempty"`
	Welcome      *sourceJSON `json:"welcome,omitempty"`
}

type sourceJSON struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
}

func toSource(s *sourceJSON) mail.TemplateSource {
	if s == nil {
		return mail.TemplateSource{}
	}
	return mail.TemplateSource{Subject: s.Subject, Text: s.Text, HTML: s.HTML}
}

func fromSource(s mail.TemplateSource) *sourceJSON {
	if s == (mail.TemplateSource{}) {
		return nil
	}
	return &sourceJSON{Subject: s.Subject, Text: s.Text, HTML: s.HTML}
}

func (p *Property) decodeTemplates(raw []byte) error {
	var t templatesJSON
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("property %q: stored templates: %w", p.Property, err)
		}
	}
	p.Templates = mail.TemplateSources{Confirmation: toSource(t.Confirmation), Welcome: toSource(t.Welcome)}
	return nil
}

func encodeTemplates(src mail.TemplateSources) []byte {
	b, _ := json.Marshal(templatesJSON{Confirmation: fromSource(src.Confirmation), Welcome: fromSource(src.Welcome)})
	return b
}

// Validate checks what an operator sets, so that nothing is refused later
// at send time: the from address parses, the sender overrides hold no
// line breaks where none belong, and the templates parse and pass
// mail.ParseTemplates' checks.
func (p Property) Validate() error {
	if strings.TrimSpace(p.Property) == "" || len(p.Property) > 200 {
		return errors.New("property: give a name of 1 to 200 characters")
	}
	if p.MailFrom != "" {
		if _, err := mail.ParseFrom(p.MailFrom); err != nil {
			return err
		}
	}
	for name, v := range map[string]string{"display name": p.DisplayName, "sender name": p.SenderName, "sender contact": p.SenderContact} {
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("%s: must be a single line", name)
		}
	}
	if _, err := mail.ParseTemplates(p.Templates); err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	return nil
}

// Sender is the property's sender identification: its overrides over the
// fleet's.
func (p *Property) Sender(fleet mail.Sender) mail.Sender {
	if p == nil {
		return fleet
	}
	return mail.Sender{
		Name:          firstOf(p.SenderName, fleet.Name),
		PostalAddress: firstOf(p.SenderPostalAddress, fleet.PostalAddress),
		Contact:       firstOf(p.SenderContact, fleet.Contact),
	}
}

// From is the property's from address, or the fleet's.
func (p *Property) From(fleet netmail.Address) (netmail.Address, error) {
	if p == nil || p.MailFrom == "" {
		return fleet, nil
	}
	return mail.ParseFrom(p.MailFrom)
}

func firstOf(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

// Properties reads and writes property settings.
type Properties struct {
	db DB
}

// NewProperties returns the settings store on db.
func NewProperties(db DB) *Properties { return &Properties{db: db} }

// Get returns a property's settings; a property without a row gets
// DefaultProperty and found false.
func (ps *Properties) Get(ctx context.Context, name string) (p Property, found bool, err error) {
	var tpl []byte
	err = ps.db.QueryRow(ctx, `
		SELECT property, coalesce(display_name, ''), coalesce(mail_from, ''), coalesce(sender_name, ''),
		       coalesce(sender_postal_address, ''), coalesce(sender_contact, ''), double_opt_in, welcome,
		       templates, updated_at
		FROM mailslot.properties WHERE property = $1`, name).Scan(&p.Property, &p.DisplayName, &p.MailFrom,
		&p.SenderName, &p.SenderPostalAddress, &p.SenderContact, &p.DoubleOptIn, &p.Welcome, &tpl, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return DefaultProperty(name), false, nil
	}
	if err != nil {
		return Property{}, false, fmt.Errorf("read property %q: %w", name, err)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, true, p.decodeTemplates(tpl)
}

// Set validates p and stores it whole.
func (ps *Properties) Set(ctx context.Context, p Property) (Property, error) {
	if err := p.Validate(); err != nil {
		return Property{}, err
	}
	null := func(s string) *string {
		if strings.TrimSpace(s) == "" {
			return nil
		}
		return &s
	}
	_, err := ps.db.Exec(ctx, `
		INSERT INTO mailslot.properties AS p (property, display_name, mail_from, sender_name, sender_postal_address,
		                                      sender_contact, double_opt_in, welcome, templates, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
		ON CONFLICT (property) DO UPDATE SET
		    display_name = EXCLUDED.display_name, mail_from = EXCLUDED.mail_from, sender_name = EXCLUDED.sender_name,
		    sender_postal_address = EXCLUDED.sender_postal_address, sender_contact = EXCLUDED.sender_contact,
		    double_opt_in = EXCLUDED.double_opt_in, welcome = EXCLUDED.welcome, templates = EXCLUDED.templates,
		    updated_at = now()`,
		p.Property, null(p.DisplayName), null(p.MailFrom), null(p.SenderName), null(p.SenderPostalAddress),
		null(p.SenderContact), p.DoubleOptIn, p.Welcome, encodeTemplates(p.Templates))
	if err != nil {
		return Property{}, fmt.Errorf("store property %q: %w", p.Property, err)
	}
	got, _, err := ps.Get(ctx, p.Property)
	return got, err
}

// List returns every property with a row.
func (ps *Properties) List(ctx context.Context) ([]string, error) {
	rows, err := ps.db.Query(ctx, `SELECT property FROM mailslot.properties ORDER BY property`)
	if err != nil {
		return nil, fmt.Errorf("list properties: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list properties: %w", err)
	}
	return names, nil
}
