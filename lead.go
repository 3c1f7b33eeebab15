package mailslot

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Consent statuses a sign-up may claim. "withdrawn" exists too, but only an
// unsubscribe can produce it.
const (
	ConsentPending = "pending"
	ConsentExpress = "express"
	ConsentImplied = "implied"
)

// Lead is a validated sign-up, as stored in the outbox payload.
type Lead struct {
	Email         string `json:"email"`
	Property      string `json:"property"`
	Consent       string `json:"consent"`
	PolicyVersion string `json:"policy_version,omitempty"`
	Source        string `json:"source,omitempty"`
	Name          string `json:"name,omitempty"`
	Page          string `json:"page,omitempty"`
	Referrer      string `json:"referrer,omitempty"`
	UTM           UTM    `json:"utm,omitzero"`
	// ImageURL is an image to describe with the lead (an https URL on an
	// allowlisted host; the edge checks the host).
	ImageURL string `json:"image_url,omitempty"`
	// Challenge is the verdict of the sign-up's bot challenge (passed or
	// unverified), empty when its property has none. The edge sets it
	// after verifying; it is never read from the request. It stays the
	// last member: the edge appends it to the lead's JSON.
	Challenge string `json:"challenge,omitempty"`
}

// LeadPayload is a sign-up as the outbox stores it: the validated lead and
// the consent record it makes.
type LeadPayload struct {
	Lead
	ConsentRecord ConsentRecord `json:"consent_record"`
}

// EncodePayload returns the JSON of LeadPayload{lead, record}, given
// leadJSON, the JSON of lead: the same bytes as json.Marshal of the
// payload (the embedded lead's members, then consent_record), without
// encoding the lead a second time. The handler hashes leadJSON for
// idempotency and stores the payload.
func EncodePayload(leadJSON []byte, record ConsentRecord) ([]byte, error) {
	if len(leadJSON) < 2 || leadJSON[0] != '{' || leadJSON[len(leadJSON)-1] != '}' {
		return nil, errors.New("encode lead payload: the lead is not a JSON object")
	}
	rec, err := json.Marshal(record)
	if err != nil {
		return nil, fmt.Errorf("encode consent record: %w", err)
	}
	const member = `"consent_record":`
	out := make([]byte, 0, len(leadJSON)+1+len(member)+len(rec))
	out = append(out, leadJSON[:len(leadJSON)-1]...)
	if len(leadJSON) > 2 {
		out = append(out, ',')
	}
	out = append(out, member...)
	out = append(out, rec...)
	return append(out, '}'), nil
}

// ConsentRecord is the proof of consent a sign-up carries (PIPEDA/CASL):
// what was agreed to, on which property, under which policy, when, and from
// which (hashed) address.
type ConsentRecord struct {
	Property      string    `json:"property"`
	PolicyVersion string    `json:"policy_version,omitempty"`
	Status        string    `json:"status"`
	Source        string    `json:"source,omitempty"`
	RecordedAt    time.Time `json:"recorded_at"`
	IPHMAC        string    `json:"ip_hmac"`
}

// UTM holds the five campaign parameters.
type UTM struct {
	Source   string `json:"source,omitempty"`
	Medium   string `json:"medium,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	Term     string `json:"term,omitempty"`
	Content  string `json:"content,omitempty"`
}

// IsZero reports whether no parameter is set.
func (u UTM) IsZero() bool { return u == UTM{} }
