package images

import (
	"net/http"

	"github.com/mailslot/mailslot"
)

// Defaults for the bounded upload storage.
const (
	// DefaultMaxUploadBytes is the largest uploaded image. Uploads travel to
	// Replicate inline as data URLs, which it recommends only below 1 MB.
	DefaultMaxUploadBytes = 1 << 20
	// DefaultUploadStoreBytes bounds all uploads kept in Postgres at once.
	DefaultUploadStoreBytes = 256 << 20
)

// InputError is a submission the caller must fix (the vocabulary's
// field error, which the HTTP layer answers without importing this
// package).
type InputError = mailslot.FieldError

// Limits are the checks a submission passes before it is stored.
type Limits struct {
	// AllowedHosts are the hosts (host or host:port) an image URL may name.
	// Empty means no URL is accepted: only uploads.
	AllowedHosts []string
	// MaxUploadBytes bounds one upload; UploadStoreBytes bounds them all.
	MaxUploadBytes   int64
	UploadStoreBytes int64
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
