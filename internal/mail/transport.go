package mail

import "context"

// Transport sends composed messages. Send returns a *SendError, whose
// Class tells the dispatcher whether to retry, give up, or record the
// message as possibly delivered. Implementations are safe for use by
// several goroutines, though they send one message at a time.
type Transport interface {
	Send(ctx context.Context, m *Message) (Result, error)
	Close() error
}

// Result describes an accepted message.
type Result struct {
	// ID is the provider's id for the message: the Message-ID for SMTP,
	// the email id for Resend (which its webhooks name).
	ID string
	// Response is the server's answer, e.g. "2.0.0 Ok: queued as 4F2A".
	Response string
}
