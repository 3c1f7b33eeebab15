package mailslot

import "time"

// Consent change actions, from signed links.
const (
	ActionConfirm     = "confirm"
	ActionUnsubscribe = "unsubscribe"
)

// ConsentWithdrawn is the status an unsubscribe records.
const ConsentWithdrawn = "withdrawn"

// Sources of the unsubscribes that mail feedback makes (a hard bounce or a
// spam complaint reported by the ESP): the sync tells them apart from the
// person's own withdrawal by these (webhook reasons bounced, complained).
const (
	SourceHardBounce = "hard_bounce"
	SourceComplaint  = "complaint"
)

// ConsentChange is a confirmation or an unsubscribe as the outbox stores
// it. The address is in the row's email_hmac column only.
type ConsentChange struct {
	Action     string    `json:"action"`
	Property   string    `json:"property"`
	Status     string    `json:"status"`
	Source     string    `json:"source"`
	RecordedAt time.Time `json:"recorded_at"`
	// TokenIssuedAt is when the confirm link's token was minted (zero for
	// an unsubscribe). Sync applies a confirmation only when its link was
	// minted after the lead's latest withdrawal: a link must not outlive a
	// later unsubscribe or erasure.
	TokenIssuedAt time.Time `json:"token_issued_at,omitzero"`
}

// ErasureRequest asks Postgres to erase an address (its hash is in the
// row's email_hmac column) as of RequestedAt.
type ErasureRequest struct {
	RequestedAt time.Time `json:"requested_at"`
	RequestedBy string    `json:"requested_by"`
}
