package mail

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Class says what a failed send means for the message.
type Class int

const (
	// Temporary: the message was not delivered and can be sent again
	// later (a 4xx reply, a refused connection, a timeout before the
	// message's end was sent, an API's 429 or 5xx, wrong credentials).
	Temporary Class = iota + 1
	// Permanent: sending the same message again will fail the same way
	// (a 5xx reply, an API's validation error). Do not retry.
	Permanent
	// Uncertain: the whole message reached the server, but its answer did
	// not reach us, so it may have been delivered. Record it as such and
	// do not resend it blindly: a resend may deliver it twice.
	Uncertain
)

func (c Class) String() string {
	switch c {
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	case Uncertain:
		return "uncertain"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// SendError is the error every Transport returns from Send.
type SendError struct {
	Class Class
	// Op is the step that failed: "dial", "auth", "mail from", "rcpt to",
	// "data", "end of data" (SMTP), "request", "response" (HTTP APIs).
	Op string
	// Code is the SMTP reply code or the HTTP status, 0 when there was no
	// answer.
	Code int
	// RetryAfter is the server's requested wait (HTTP Retry-After), or 0.
	RetryAfter time.Duration
	// Err is the cause, with the recipient's address removed.
	Err error
}

func (e *SendError) Error() string {
	var b strings.Builder
	b.WriteString("send mail: ")
	b.WriteString(e.Op)
	b.WriteString(" (")
	b.WriteString(e.Class.String())
	if e.Code != 0 {
		fmt.Fprintf(&b, ", %d", e.Code)
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *SendError) Unwrap() error { return e.Err }

// ClassOf is the class of err: a SendError's own, Temporary for any other
// error (nothing was sent), 0 for nil.
func ClassOf(err error) Class {
	if err == nil {
		return 0
	}
	var se *SendError
	if errors.As(err, &se) {
		return se.Class
	}
	return Temporary
}

// IsTemporary reports whether err means "not sent; try again later".
func IsTemporary(err error) bool { return ClassOf(err) == Temporary }

// IsUncertain reports whether err means "may have been delivered".
func IsUncertain(err error) bool { return ClassOf(err) == Uncertain }

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("transport is closed")

// redacted is a cause whose text has had an address taken out: servers
// and APIs sometimes echo the recipient in their replies.
type redacted struct {
	msg   string
	cause error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.cause }

func redact(err error, addrs ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, a := range addrs {
		if a == "" {
			continue
		}
		msg = replaceFold(msg, a, "<recipient>")
	}
	return &redacted{msg: msg, cause: err}
}

// replaceFold replaces every case-insensitive occurrence of old (ASCII
// folding, which is what servers' case changes are) in s.
func replaceFold(s, old, repl string) string {
	ls, lo := strings.ToLower(s), strings.ToLower(old)
	if len(ls) != len(s) || !strings.Contains(ls, lo) {
		return strings.ReplaceAll(s, old, repl)
	}
	var b strings.Builder
	for {
		i := strings.Index(ls, lo)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(repl)
		s, ls = s[i+len(old):], ls[i+len(old):]
	}
}
