package mail_test

import (
	netmail "net/mail"
	"testing"

	"github.com/mailslot/mailslot/internal/mail"
)

var testSender = mail.Sender{
	Name:          "Crème Brûlée Marketing Inc.",
	PostalAddress: "100 Rue Saint-Paul\nMontréal QC H2Y 1Z3\nCanada",
	Contact:       "privacy@example.com",
}

const (
	testConfirmURL = "https://edge.example.com/v1/confirm?token=k1.cGF5bG9hZA.bWFj"
	testUnsubURL   = "https://edge.example.com/v1/unsubscribe?token=k1.dW5zdWI.bWFj"
)

// draft is a confirmation to a non-ASCII name, with a non-ASCII subject
// through the property's name.
func draft(jobID string) mail.Draft {
	return mail.Draft{
		Kind:           mail.Confirmation,
		JobID:          jobID,
		From:           netmail.Address{Name: "Crème Brûlée Café", Address: "news@example.com"},
		To:             netmail.Address{Name: "Zoë Ñandú", Address: "zoe@example.org"},
		Property:       "Café Zoë",
		ConfirmURL:     testConfirmURL,
		UnsubscribeURL: testUnsubURL,
		Sender:         testSender,
	}
}

func compose(tb testing.TB, d mail.Draft) *mail.Message {
	tb.Helper()
	m, err := mail.Compose(d)
	if err != nil {
		tb.Fatalf("Compose: %v", err)
	}
	return m
}
