package mail_test

import (
	"io"
	"testing"

	"github.com/mailslot/mailslot/internal/mail"
)

// BenchmarkCompose measures rendering the templates and the footer into
// a Message.
func BenchmarkCompose(b *testing.B) {
	d := draft("123456789")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mail.Compose(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeAndRender adds what the SMTP transport does per
// message: building the MIME message and writing it out.
func BenchmarkComposeAndRender(b *testing.B) {
	d := draft("123456789")
	b.ReportAllocs()
	for b.Loop() {
		m, err := mail.Compose(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
