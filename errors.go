package mailslot

// Error codes: the "error" member of every JSON error answer
// ({"error":"<code>","fields":{…}}) and the "error" query parameter of a
// form post's redirect to MAILSLOT_ERROR_URL. They are a public contract,
// listed in README's "Error codes" table: clients branch on them, so a code
// is never renamed or reused for another meaning. They live in the shared
// vocabulary because the request validator (edge/intake) produces some of
// them below the HTTP layer, and clients of the edge's API (mailslotctl)
// read them back; the HTTP status of each is the HTTP layer's business
// (edge/api), decided there in one table.
const (
	// CodeInvalidJSON: the body is not the JSON the endpoint takes
	// (malformed, the wrong shape, unknown members, trailing data).
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidForm: a form body that cannot be parsed.
	CodeInvalidForm = "invalid_form"
	// CodeInvalidBody: the body could not be read at all (the client went
	// away or sent a broken chunked body); nothing was stored.
	CodeInvalidBody = "invalid_body"
	// CodeInvalidIdempotencyKey: an Idempotency-Key that is not 1 to 128
	// visible ASCII characters.
	CodeInvalidIdempotencyKey = "invalid_idempotency_key"
	// CodeInvalidToken: a signed link's token that does not verify.
	CodeInvalidToken = "invalid_token"
	// CodeExpiredToken: a signed link past its lifetime.
	CodeExpiredToken = "expired_token"
	// CodeWrongPurpose: a valid token used on another link's endpoint (an
	// unsubscribe token on the erasure page, say).
	CodeWrongPurpose = "wrong_purpose"
	// CodeInvalidPrediction: a correctly signed webhook whose body is not a
	// prediction.
	CodeInvalidPrediction = "invalid_prediction"
	// CodeUnauthorized: an admin endpoint called without a bearer token.
	CodeUnauthorized = "unauthorized"
	// CodeInvalidSignature: a webhook whose signature does not verify.
	CodeInvalidSignature = "invalid_signature"
	// CodeForbidden: an admin endpoint called with the wrong token.
	CodeForbidden = "forbidden"
	// CodeOriginNotAllowed: a form posted from an origin outside
	// MAILSLOT_CORS_ORIGINS.
	CodeOriginNotAllowed = "origin_not_allowed"
	// CodeNotFound: no such route, or no such image job.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed: a route that exists, called with another method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodePublicURLNotConfigured: links cannot be minted without
	// MAILSLOT_PUBLIC_URL.
	CodePublicURLNotConfigured = "public_url_not_configured"
	// CodeBodyTooLarge: a body over the endpoint's limit.
	CodeBodyTooLarge = "body_too_large"
	// CodeUnsupportedMediaType: a content type or charset the endpoint
	// does not take.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeInvalidFields: the body was read but fields are wrong; "fields"
	// maps each to a field code (required, invalid, too_long, …).
	CodeInvalidFields = "invalid_fields"
	// CodeTooManyEvents: more events in one request than MAILSLOT_MAX_EVENTS.
	CodeTooManyEvents = "too_many_events"
	// CodeIdempotencyKeyReused: an Idempotency-Key already used with a
	// different body.
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	// CodeRateLimited: the client's address is over its rate; the answer
	// carries Retry-After.
	CodeRateLimited = "rate_limited"
	// CodeInternal: a failure the client cannot fix; it is logged, and the
	// answer says nothing about why.
	CodeInternal = "internal"
	// CodeUnavailable: the store cannot take work now (the outbox is over
	// its limits, stopping or out of disk; Postgres unreachable). Nothing
	// was half-written; the answer carries Retry-After.
	CodeUnavailable = "unavailable"
	// CodeImagesUnavailable: this edge has no DATABASE_URL, so it has no
	// image jobs.
	CodeImagesUnavailable = "images_unavailable"
	// CodeWebhookNotConfigured: a webhook arrived at an edge without the
	// provider's signing secret.
	CodeWebhookNotConfigured = "webhook_not_configured"
	// CodeUploadStorageFull: the uploads kept for image jobs reach their
	// total cap.
	CodeUploadStorageFull = "upload_storage_full"
	// CodeBusy: a provider's webhook arrived while as many bodies as the
	// edge reads at once were being read; the provider delivers again.
	CodeBusy = "busy"
	// CodeInvalidEvent: a signed ESP webhook whose body is not an event.
	CodeInvalidEvent = "invalid_event"
	// CodeHostNotAllowed: the private listener was reached under a Host
	// that a web page could own (DNS rebinding).
	CodeHostNotAllowed = "host_not_allowed"
	// CodeCrossSiteRequest: a browser sent the private listener a request
	// from a web page.
	CodeCrossSiteRequest = "cross_site_request"
	// CodeChallengeRequired: a form posted without a challenge token on a
	// property whose no-JS policy is refuse.
	CodeChallengeRequired = "challenge_required"
	// CodeNoChallenge: GET /v1/challenge for a property without a proof of
	// work.
	CodeNoChallenge = "no_challenge"
)
