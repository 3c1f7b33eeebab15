package images

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook errors. Each means the delivery is not acted on; the receiver
// answers 401 so that a forged request learns nothing more.
var (
	ErrWebhookUnsigned  = errors.New("webhook: signature headers missing")
	ErrWebhookStale     = errors.New("webhook: timestamp outside the tolerance")
	ErrWebhookSignature = errors.New("webhook: no signature matches")
)

// WebhookTolerance is how far a webhook's timestamp may be from our clock.
// It bounds replays: a captured delivery is refused after this long, and
// one replayed sooner changes nothing (deliveries are idempotent).
const WebhookTolerance = 5 * time.Minute

// MaxWebhookBody bounds a webhook's body: a prediction with its input
// (an upload's data URL) and output.
const MaxWebhookBody = maxProviderBody

// WebhookKey decodes a signing secret as Replicate hands it out
// ("whsec_" followed by base64).
func WebhookKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(secret), "whsec_")
	if !ok || b64 == "" {
		return nil, errors.New("webhook signing secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("webhook signing secret is not base64 after whsec_")
	}
	return key, nil
}

// CheckWebhookHeaders is the part of VerifyWebhook that needs no body: the
// signature headers are present, bounded and fresh. The endpoint is public,
// so it runs before a byte of the body is read; a forged post without them
// costs no memory.
func CheckWebhookHeaders(h http.Header, now time.Time) error {
	id, ts, sigs := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
	if id == "" || ts == "" || sigs == "" || len(id) > 256 || len(sigs) > 1024 {
		return ErrWebhookUnsigned
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrWebhookStale
	}
	if d := now.Sub(time.Unix(secs, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return ErrWebhookStale
	}
	return nil
}

// VerifyWebhook checks a delivery's signature: webhook-signature holds one
// or more space-separated "v1,<base64>" entries, each an HMAC-SHA256 with
// the key over "<webhook-id>.<webhook-timestamp>.<raw body>"; one match is
// enough (several appear while a secret is rotated). The body must be
// verified exactly as received, before it is parsed.
func VerifyWebhook(key []byte, h http.Header, body []byte, now time.Time) error {
	if len(key) == 0 {
		return ErrWebhookUnsigned
	}
	if err := CheckWebhookHeaders(h, now); err != nil {
		return err
	}
	id, ts, sigs := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrWebhookSignature
}
