package mail

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
)

// Kind is which of the two messages is meant.
type Kind string

// The kinds of message mailslot sends.
const (
	// Confirmation asks the recipient to confirm a sign-up (double opt-in).
	Confirmation Kind = "confirmation"
	// Welcome follows a confirmed sign-up.
	Welcome Kind = "welcome"
)

func (k Kind) valid() bool { return k == Confirmation || k == Welcome }

// TemplateSource is the source of one kind's templates. Subject and Text
// are text/template, HTML is html/template. An empty field falls back to
// the built-in default for that field.
//
// The HTML template is the content of the body only: the composer writes
// the document around it and, in every message, the sender
// identification block and the unsubscribe footer, so that no template
// can leave them out.
//
// Templates can use these fields:
//
//	.Property        the property's name as the recipient knows it
//	.RecipientName   the recipient's name; may be empty
//	.SenderName      the identified sender's name
//	.UnsubscribeURL  the signed unsubscribe link
//	.ConfirmURL      the signed confirm link (confirmation only; a
//	                 confirmation's Text and HTML must both show it)
type TemplateSource struct {
	Subject string
	Text    string
	HTML    string
}

// TemplateSources holds one property's template sources.
type TemplateSources struct {
	Confirmation TemplateSource
	Welcome      TemplateSource
}

// Templates is a parsed, validated set of templates for one property. It
// is safe for concurrent use.
type Templates struct {
	confirmation, welcome kindTemplates
}

type kindTemplates struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// commonData is what every template sees.
type commonData struct {
	Property       string
	RecipientName  string
	SenderName     string
	UnsubscribeURL string
}

// confirmationData adds the confirm link; welcome templates get
// commonData, so a welcome that names .ConfirmURL is refused when parsed.
type confirmationData struct {
	commonData
	ConfirmURL string
}

// The built-in defaults: English, plain, and complete.
var defaultSources = TemplateSources{
	Confirmation: TemplateSource{
		Subject: `Please confirm your subscription to {{.Property}}`,
		Text: `{{if .RecipientName}}Hello {{.RecipientName}},{{else}}Hello,{{end}}

Please confirm that you want to receive email from {{.Property}} by opening this link:

{{.ConfirmURL}}

If you did not sign up, you can ignore this message: nothing more will be sent unless you confirm.
`,
		HTML: `<p>{{if .RecipientName}}Hello {{.RecipientName}},{{else}}Hello,{{end}}</p>
<p>Please confirm that you want to receive email from {{.Property}}.</p>
<p><a href="{{.ConfirmURL}}" style="display:inline-block;padding:0.6em 1.2em;background:#1a56db;color:#fff;text-decoration:none;border-radius:4px">Confirm my subscription</a></p>
<p>If the button does not work, copy this address into your browser:<br>{{.ConfirmURL}}</p>
<p>If you did not sign up, you can ignore this message: nothing more will be sent unless you confirm.</p>
`,
	},
	Welcome: TemplateSource{
		Subject: `Welcome to {{.Property}}`,
		Text: `{{if .RecipientName}}Hello {{.RecipientName}},{{else}}Hello,{{end}}

Thank you for confirming your subscription. You will now receive email from {{.Property}}.

You can unsubscribe at any time with the link at the end of every message.
`,
		HTML: `<p>{{if .RecipientName}}Hello {{.RecipientName}},{{else}}Hello,{{end}}</p>
<p>Thank you for confirming your subscription. You will now receive email from {{.Property}}.</p>
<p>You can unsubscribe at any time with the link at the end of every message.</p>
`,
	},
}

var defaultTemplates = func() *Templates {
	t, err := ParseTemplates(TemplateSources{})
	if err != nil {
		panic("mail: built-in templates: " + err.Error())
	}
	return t
}()

// DefaultTemplates returns the built-in templates.
func DefaultTemplates() *Templates { return defaultTemplates }

// sampleConfirmURL is what a confirmation template must show when it is
// checked; it contains nothing HTML would escape.
const sampleConfirmURL = "https://confirm.example.invalid/v1/confirm?token=SAMPLE-TOKEN"

// samples are the data templates are tried with at parse time: with and
// without a recipient name, so that a branch on the name cannot hide a
// missing confirm link or a broken field.
var samples = []confirmationData{
	{commonData{"Example Property", "Ada Lovelace", "Example Sender", "https://unsubscribe.example.invalid/u?token=X"}, sampleConfirmURL},
	{commonData{"Example Property", "", "Example Sender", "https://unsubscribe.example.invalid/u?token=X"}, sampleConfirmURL},
}

// ParseTemplates parses and checks a property's templates, at
// configuration time, so that a broken template is refused by the
// operator's command rather than found by the dispatcher: syntax errors,
// fields that do not exist, an empty subject, an HTML template that
// writes its own document, and a confirmation whose text or HTML omits
// the confirm link are all refused. Empty sources use the defaults.
func ParseTemplates(src TemplateSources) (*Templates, error) {
	var t Templates
	var err error
	if t.confirmation, err = parseKind(Confirmation, src.Confirmation, defaultSources.Confirmation); err != nil {
		return nil, err
	}
	if t.welcome, err = parseKind(Welcome, src.Welcome, defaultSources.Welcome); err != nil {
		return nil, err
	}
	return &t, nil
}

func parseKind(kind Kind, src, def TemplateSource) (kindTemplates, error) {
	var kt kindTemplates
	var err error
	pick := func(s, d string) string {
		if strings.TrimSpace(s) == "" {
			return d
		}
		return s
	}
	if kt.subject, err = texttemplate.New("subject").Parse(pick(src.Subject, def.Subject)); err != nil {
		return kt, fmt.Errorf("%s subject template: %w", kind, err)
	}
	if kt.text, err = texttemplate.New("text").Parse(pick(src.Text, def.Text)); err != nil {
		return kt, fmt.Errorf("%s text template: %w", kind, err)
	}
	if kt.html, err = htmltemplate.New("html").Parse(pick(src.HTML, def.HTML)); err != nil {
		return kt, fmt.Errorf("%s html template: %w", kind, err)
	}
	for _, s := range samples {
		var data any = s
		if kind == Welcome {
			data = s.commonData
		}
		subject, text, html, err := kt.render(kind, data)
		if err != nil {
			return kt, err
		}
		if subject == "" {
			return kt, fmt.Errorf("%s subject template: renders an empty subject", kind)
		}
		if hasDocumentTags(html) {
			return kt, fmt.Errorf("%s html template: write only the body's content; the document, the sender identification and the unsubscribe footer are added to every message", kind)
		}
		if kind == Confirmation {
			if !strings.Contains(text, sampleConfirmURL) {
				return kt, fmt.Errorf("%s text template: must show the confirm link {{.ConfirmURL}}", kind)
			}
			if !strings.Contains(html, sampleConfirmURL) {
				return kt, fmt.Errorf("%s html template: must show the confirm link {{.ConfirmURL}}", kind)
			}
		}
	}
	return kt, nil
}

// render executes the three templates; the subject has its whitespace
// (newlines included) collapsed, so that it is one header line.
func (kt kindTemplates) render(kind Kind, data any) (subject, text, html string, err error) {
	var b bytes.Buffer
	if err = kt.subject.Execute(&b, data); err != nil {
		return "", "", "", fmt.Errorf("%s subject template: %w", kind, err)
	}
	subject = strings.Join(strings.Fields(b.String()), " ")
	b.Reset()
	if err = kt.text.Execute(&b, data); err != nil {
		return "", "", "", fmt.Errorf("%s text template: %w", kind, err)
	}
	text = b.String()
	b.Reset()
	if err = kt.html.Execute(&b, data); err != nil {
		return "", "", "", fmt.Errorf("%s html template: %w", kind, err)
	}
	html = b.String()
	return subject, text, html, nil
}

func hasDocumentTags(html string) bool {
	l := strings.ToLower(html)
	for _, tag := range []string{"<html", "<body", "</body", "<head", "<!doctype"} {
		if strings.Contains(l, tag) {
			return true
		}
	}
	return false
}

func (t *Templates) kind(k Kind) (kindTemplates, error) {
	switch k {
	case Confirmation:
		return t.confirmation, nil
	case Welcome:
		return t.welcome, nil
	}
	return kindTemplates{}, errors.New("unknown message kind")
}
