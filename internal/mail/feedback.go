package mail

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// FeedbackKind is what a provider reported about a delivered message.
type FeedbackKind string

// Feedback kinds.
const (
	Bounce    FeedbackKind = "bounce"
	Complaint FeedbackKind = "complaint"
)

// Feedback is a bounce or a complaint reported by the provider. A
// permanent one should suppress the address: a hard bounce (the mailbox
// does not exist) or a complaint (the recipient called it spam).
type Feedback struct {
	Kind      FeedbackKind
	Permanent bool
	// EmailID is the provider's id of the message (Result.ID at send).
	EmailID string
	To      []string
	// BounceType and BounceSubType are Resend's words, e.g. "Permanent"
	// and "General", kept for the record.
	BounceType, BounceSubType string
	At                        time.Time
}

// resendEvent is a Resend webhook event's body.
type resendEvent struct {
	Type      string `json:"type"`
	CreatedAt string `json:"created_at"`
	Data      struct {
		EmailID string          `json:"email_id"`
		To      json.RawMessage `json:"to"`
		Bounce  *struct {
			Type    string `json:"type"`
			SubType string `json:"subType"`
			Message string `json:"message"`
		} `json:"bounce"`
	} `json:"data"`
}

// ParseResendFeedback reads a Resend webhook event body (already verified
// by its Svix signature; this does not check it). For email.bounced and
// email.complained it returns the feedback and ok; for every other event
// type, ok is false and err nil, so the caller can acknowledge and
// ignore it. A bounce is permanent only when Resend calls it Permanent:
// Transient and Undetermined bounces may clear.
func ParseResendFeedback(body []byte) (fb Feedback, ok bool, err error) {
	var ev resendEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return Feedback{}, false, fmt.Errorf("parse resend event: %w", err)
	}
	switch ev.Type {
	case "email.bounced":
		fb.Kind = Bounce
		if ev.Data.Bounce == nil {
			return Feedback{}, false, errors.New("parse resend event: email.bounced without a bounce")
		}
		fb.BounceType, fb.BounceSubType = ev.Data.Bounce.Type, ev.Data.Bounce.SubType
		fb.Permanent = ev.Data.Bounce.Type == "Permanent"
	case "email.complained":
		fb.Kind, fb.Permanent = Complaint, true
	case "":
		return Feedback{}, false, errors.New("parse resend event: no type")
	default:
		return Feedback{}, false, nil
	}
	if ev.Data.EmailID == "" {
		return Feedback{}, false, fmt.Errorf("parse resend event: %s without an email_id", ev.Type)
	}
	// "to" is documented as an array; accept a lone string too.
	var one string
	if json.Unmarshal(ev.Data.To, &fb.To) != nil && json.Unmarshal(ev.Data.To, &one) == nil && one != "" {
		fb.To = []string{one}
	}
	if len(fb.To) == 0 {
		return Feedback{}, false, fmt.Errorf("parse resend event: %s without a recipient", ev.Type)
	}
	fb.EmailID = ev.Data.EmailID
	// The time is informative: an odd format leaves it zero rather than
	// losing the feedback.
	fb.At, _ = time.Parse(time.RFC3339Nano, ev.CreatedAt)
	return fb, true, nil
}
