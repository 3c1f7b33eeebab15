// Package mail builds and sends the two messages that complete double
// opt-in: the confirmation request and the welcome after confirmation.
//
// Compose renders a Message from per-property Templates and appends, to
// every message whatever its template says, the CASL sender
// identification block and an unsubscribe link; it also sets RFC 8058
// one-click unsubscribe headers and a Message-ID derived from the job, so
// that every attempt of one job carries the same identity.
//
// A Transport (SMTP or the Resend API) sends a Message and classifies its
// failures with a Class: permanent (do not retry), temporary (retry
// later) or uncertain (the message may have been delivered; do not resend
// blindly). The dispatcher that leases jobs from Postgres decides what to
// do with each class; this package holds no state about jobs.
//
// The package is named like the standard net/mail, which it imports as
// netmail; callers that need both should do the same.
package mail
