package mailslot

// Kind says what a row holds.
type Kind string

// Row kinds. Later kinds (consent changes, erasure requests) travel through
// the same outbox so that they share its durability and ordering.
const (
	KindLead  Kind = "lead"
	KindEvent Kind = "event"
	// KindConsent is a confirmation or an unsubscribe from a signed link.
	KindConsent Kind = "consent"
	// KindErasure asks Postgres to erase an address everywhere.
	KindErasure Kind = "erasure"
	// KindChallenge is a re-check's verdict for an unverified sign-up.
	KindChallenge Kind = "challenge"
)

// ErasedPayload replaces the payload of a row whose address was erased.
// The row itself stays, pending or retained, so that its (node_id, seq)
// still reaches the ledger and reconciliation sees no gap.
const ErasedPayload = `{"erased":true}`
