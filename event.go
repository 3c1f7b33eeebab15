package mailslot

import "time"

// Event types.
const (
	EventPageView   = "page_view"
	EventFormSubmit = "form_submit"
	EventClick      = "click"
	EventCustom     = "custom"
)

// Event is a validated telemetry event, as stored in the outbox payload.
type Event struct {
	Type         string         `json:"type"`
	Property     string         `json:"property"`
	Name         string         `json:"name,omitempty"`
	Page         string         `json:"page,omitempty"`
	Referrer     string         `json:"referrer,omitempty"`
	UTM          UTM            `json:"utm,omitzero"`
	Props        map[string]any `json:"props,omitempty"`
	SubmissionID string         `json:"submission_id,omitempty"`
	// ClientTime is the browser's clock, kept beside the receive time; it is
	// never trusted for ordering.
	ClientTime *time.Time `json:"client_time,omitempty"`
}
