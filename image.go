package mailslot

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Image description jobs as the admin API and mailslotctl show them. The
// jobs live in Postgres (sync/images); these are the shapes the HTTP layer
// and the job store exchange, so that neither imports the other.

// ImageJob is one image description job as operators see it.
type ImageJob struct {
	ID          int64      `json:"id"`
	LeadID      *int64     `json:"lead_id"`
	Source      string     `json:"source"`
	ImageURL    string     `json:"image_url,omitempty"`
	UploadBytes int64      `json:"upload_bytes,omitempty"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	MaxAttempts int        `json:"max_attempts"`
	RunAfter    time.Time  `json:"run_after"`
	Provider    string     `json:"provider,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	Caption     *string    `json:"caption"`
	FaceCount   *int       `json:"face_count"`
	SubmittedBy string     `json:"submitted_by"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	// PredictSeconds and CostUSD sum what the provider reported for this
	// job's predictions, across attempts.
	PredictSeconds float64 `json:"predict_seconds"`
	CostUSD        float64 `json:"cost_usd"`
}

// ImageSubmission is a new job: an image URL or uploaded bytes.
type ImageSubmission struct {
	LeadID *int64
	URL    string
	Image  []byte
	// SubmittedBy records who asked (admin_api, mailslotctl, …).
	SubmittedBy string
	MaxAttempts int
}

// Errors of the image job store; the edge and mailslotctl map them to
// answers.
var (
	ErrImageJobNotFound = errors.New("image job not found")
	ErrLeadNotFound     = errors.New("lead not found")
	ErrUploadStoreFull  = errors.New("upload storage is full")
	// ErrInvalidPrediction is a provider's webhook body that is not a
	// prediction (it was signed, so the sender has a bug).
	ErrInvalidPrediction = errors.New("not a prediction")
)

// FieldError is input the caller must fix: Field names what is wrong and
// Code says how, in the contract's field-error vocabulary.
type FieldError struct {
	Field string
	Code  string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Code) }

// maxImageURLLength bounds a stored image URL.
const maxImageURLLength = 2048

// CheckImageURL accepts an https URL whose host is on the allowlist,
// without credentials or a fragment, and returns it as it will be stored.
// The provider fetches it: the edge itself never does.
func CheckImageURL(raw string, allowed []string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", &FieldError{Field: "url", Code: "required"}
	}
	if len(raw) > maxImageURLLength {
		return "", &FieldError{Field: "url", Code: "too_long"}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", &FieldError{Field: "url", Code: "invalid"}
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return "", &FieldError{Field: "url", Code: "not_https"}
	}
	if u.User != nil {
		return "", &FieldError{Field: "url", Code: "invalid"}
	}
	if !hostAllowed(u, allowed) {
		return "", &FieldError{Field: "url", Code: "host_not_allowed"}
	}
	u.Scheme = "https"
	u.Host = strings.ToLower(u.Host)
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

// hostAllowed matches exactly: "cdn.example.com" admits that host on the
// default port, "cdn.example.com:8443" that port; no wildcards, so that a
// look-alike subdomain cannot slip through.
func hostAllowed(u *url.URL, allowed []string) bool {
	host := strings.ToLower(u.Host)
	name := strings.ToLower(u.Hostname())
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			continue
		}
		if a == host || (a == name && (u.Port() == "" || u.Port() == "443")) {
			return true
		}
	}
	return false
}
