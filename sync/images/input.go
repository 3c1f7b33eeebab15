package images

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Defaults for the bounded upload storage.
const (
	// DefaultMaxUploadBytes is the largest uploaded image. Uploads travel to
	// Replicate inline as data URLs, which it recommends only below 1 MB.
	DefaultMaxUploadBytes = 1 << 20
	// DefaultUploadStoreBytes bounds all uploads kept in Postgres at once.
	DefaultUploadStoreBytes = 256 << 20
	// maxURLLength bounds a stored image URL.
	maxURLLength = 2048
)

// InputError is a submission the caller must fix: Field names what is
// wrong and Code says how, in the contract's field-error vocabulary.
type InputError struct {
	Field string
	Code  string
}

func (e *InputError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Code) }

// Limits are the checks a submission passes before it is stored.
type Limits struct {
	// AllowedHosts are the hosts (host or host:port) an image URL may name.
	// Empty means no URL is accepted: only uploads.
	AllowedHosts []string
	// MaxUploadBytes bounds one upload; UploadStoreBytes bounds them all.
	MaxUploadBytes   int64
	UploadStoreBytes int64
}

// CheckURL accepts an https URL whose host is on the allowlist, without
// credentials or a fragment, and returns it as it will be stored. The
// provider fetches it: the edge itself never does.
func CheckURL(raw string, allowed []string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", &InputError{Field: "url", Code: "required"}
	}
	if len(raw) > maxURLLength {
		return "", &InputError{Field: "url", Code: "too_long"}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", &InputError{Field: "url", Code: "invalid"}
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return "", &InputError{Field: "url", Code: "not_https"}
	}
	if u.User != nil {
		return "", &InputError{Field: "url", Code: "invalid"}
	}
	if !hostAllowed(u, allowed) {
		return "", &InputError{Field: "url", Code: "host_not_allowed"}
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

// imageTypes are the formats accepted for upload, by sniffed type.
var imageTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// CheckImage accepts an upload whose bytes are a JPEG, PNG, GIF or WebP
// image of at most max bytes, and returns its type as sniffed from the
// bytes (the declared type is not trusted).
func CheckImage(data []byte, max int64) (string, error) {
	if len(data) == 0 {
		return "", &InputError{Field: "image", Code: "required"}
	}
	if max > 0 && int64(len(data)) > max {
		return "", &InputError{Field: "image", Code: "too_large"}
	}
	ct := http.DetectContentType(data)
	if !imageTypes[ct] {
		return "", &InputError{Field: "image", Code: "not_an_image"}
	}
	return ct, nil
}
