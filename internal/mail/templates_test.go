package mail_test

import (
	"strings"
	"testing"

	"github.com/mailslot/mailslot/internal/mail"
)

func TestParseTemplatesRefusesBrokenTemplates(t *testing.T) {
	okConfirm := mail.TemplateSource{Subject: "Confirm", Text: "Go to {{.ConfirmURL}}", HTML: `<a href="{{.ConfirmURL}}">{{.ConfirmURL}}</a>`}
	tests := []struct {
		name string
		src  mail.TemplateSources
		want string
	}{
		{"syntax error in subject", mail.TemplateSources{Welcome: mail.TemplateSource{Subject: "Hi {{.Property"}}, "welcome subject template"},
		{"syntax error in html", mail.TemplateSources{Welcome: mail.TemplateSource{HTML: "<p>{{if .Property}}</p>"}}, "welcome html template"},
		{"unknown field", mail.TemplateSources{Welcome: mail.TemplateSource{Text: "Hi {{.FirstName}}"}}, "can't evaluate field FirstName"},
		{"confirm URL in a welcome", mail.TemplateSources{Welcome: mail.TemplateSource{Text: "{{.ConfirmURL}}"}}, "can't evaluate field ConfirmURL"},
		{"confirmation text without the link", mail.TemplateSources{Confirmation: mail.TemplateSource{Text: "Please confirm."}}, "confirmation text template: must show the confirm link"},
		{"confirmation html without the link", mail.TemplateSources{Confirmation: mail.TemplateSource{HTML: "<p>Please confirm.</p>"}}, "confirmation html template: must show the confirm link"},
		{"link only when there is a name", mail.TemplateSources{Confirmation: mail.TemplateSource{Text: "{{if .RecipientName}}{{.ConfirmURL}}{{end}}", HTML: okConfirm.HTML}}, "must show the confirm link"},
		{"empty subject", mail.TemplateSources{Confirmation: mail.TemplateSource{Subject: "{{if false}}x{{end}}", Text: okConfirm.Text, HTML: okConfirm.HTML}}, "empty subject"},
		{"html writes its own document", mail.TemplateSources{Welcome: mail.TemplateSource{HTML: "<html><body>Hi</body></html>"}}, "only the body's content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mail.ParseTemplates(tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseTemplates = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestCustomTemplatesKeepFooter: a property's own templates are used, and
// the identification block and unsubscribe link are still in both parts
// though the templates never mention them.
func TestCustomTemplatesKeepFooter(t *testing.T) {
	tpl, err := mail.ParseTemplates(mail.TemplateSources{
		Confirmation: mail.TemplateSource{
			Subject: "Un pas de plus, {{.RecipientName}} !\n",
			Text:    "Confirmez : {{.ConfirmURL}}",
			HTML:    `<p>Confirmez : <a href="{{.ConfirmURL}}">ici</a> {{.ConfirmURL}}</p><script>{{.RecipientName}}</script>`,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := draft("9")
	d.Templates = tpl
	d.To.Name = `Zoë <b>"bold"</b>`
	m := compose(t, d)
	if m.Subject != `Un pas de plus, Zoë <b>"bold"</b> !` {
		t.Errorf("Subject = %q", m.Subject)
	}
	if !strings.HasPrefix(m.Text, "Confirmez : "+testConfirmURL) {
		t.Errorf("Text does not start with the template's output:\n%s", m.Text)
	}
	if strings.Contains(m.HTML, "<b>") {
		t.Errorf("HTML does not escape the recipient's name:\n%s", m.HTML)
	}
	for part, body := range map[string]string{"text": m.Text, "html": m.HTML} {
		for _, want := range []string{testSender.Name, "Montréal QC H2Y 1Z3", testSender.Contact, "Unsubscribe"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q", part, want)
			}
		}
	}
	if !strings.Contains(m.HTML, `href="`+testUnsubURL+`"`) || !strings.Contains(m.Text, testUnsubURL) {
		t.Error("unsubscribe link missing")
	}
	// The welcome falls back to the default.
	w := draft("10")
	w.Kind, w.ConfirmURL, w.Templates = mail.Welcome, "", tpl
	if got := compose(t, w).Subject; got != "Welcome to Café Zoë" {
		t.Errorf("default welcome subject = %q", got)
	}
}
