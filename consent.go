package mailslot

import "time"

// Consent change actions, from signed links.
const (
	ActionConfirm     = "confirm"
	ActionUnsubscribe = "unsubscribe"
)

// ConsentWithdrawn is the status an unsubscribe records.
const ConsentWithdrawn = "withdrawn"

// ConsentChange is a confirmation or an unsubscribe as the outbox stores
// it. The address is in the row's email_hmac column only.
type ConsentChange struct {
	Action     string    `json:"action"`
	Property   string    `json:"property"`
	Status     string    `json:"status"`
	Source     string    `json:"source"`
	RecordedAt time.Time `json:"recorded_at"`
}

// ErasureRequest asks Postgres to erase an address (its hash is in the
// row's email_hmac column) as of RequestedAt.
type ErasureRequest struct {
	RequestedAt time.Time `json:"requested_at"`
	RequestedBy string    `json:"requested_by"`
}
