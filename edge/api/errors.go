package api

import (
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/edge/intake"
)

// statusOf is the one map from an error code to its HTTP status; every
// error answer takes its status from here. README's "Error codes" table
// documents the same pairs, and a test holds the two to each other.
var statusOf = map[string]int{
	mailslot.CodeInvalidJSON:            http.StatusBadRequest,
	mailslot.CodeInvalidForm:            http.StatusBadRequest,
	mailslot.CodeInvalidBody:            http.StatusBadRequest,
	mailslot.CodeInvalidIdempotencyKey:  http.StatusBadRequest,
	mailslot.CodeInvalidToken:           http.StatusBadRequest,
	mailslot.CodeExpiredToken:           http.StatusBadRequest,
	mailslot.CodeWrongPurpose:           http.StatusBadRequest,
	mailslot.CodeInvalidPrediction:      http.StatusBadRequest,
	mailslot.CodeUnauthorized:           http.StatusUnauthorized,
	mailslot.CodeInvalidSignature:       http.StatusUnauthorized,
	mailslot.CodeForbidden:              http.StatusForbidden,
	mailslot.CodeOriginNotAllowed:       http.StatusForbidden,
	mailslot.CodeNotFound:               http.StatusNotFound,
	mailslot.CodeMethodNotAllowed:       http.StatusMethodNotAllowed,
	mailslot.CodePublicURLNotConfigured: http.StatusConflict,
	mailslot.CodeBodyTooLarge:           http.StatusRequestEntityTooLarge,
	mailslot.CodeUnsupportedMediaType:   http.StatusUnsupportedMediaType,
	mailslot.CodeInvalidFields:          http.StatusUnprocessableEntity,
	mailslot.CodeTooManyEvents:          http.StatusUnprocessableEntity,
	mailslot.CodeIdempotencyKeyReused:   http.StatusUnprocessableEntity,
	mailslot.CodeRateLimited:            http.StatusTooManyRequests,
	mailslot.CodeInternal:               http.StatusInternalServerError,
	mailslot.CodeUnavailable:            http.StatusServiceUnavailable,
	mailslot.CodeImagesUnavailable:      http.StatusServiceUnavailable,
	mailslot.CodeWebhookNotConfigured:   http.StatusServiceUnavailable,
	mailslot.CodeUploadStorageFull:      http.StatusInsufficientStorage,
	mailslot.CodeBusy:                   http.StatusServiceUnavailable,
	mailslot.CodeInvalidEvent:           http.StatusBadRequest,
	mailslot.CodeHostNotAllowed:         http.StatusForbidden,
	mailslot.CodeCrossSiteRequest:       http.StatusForbidden,
	mailslot.CodeChallengeRequired:      http.StatusUnprocessableEntity,
	mailslot.CodeNoChallenge:            http.StatusServiceUnavailable,
}

// errorStatus is code's HTTP status. A code missing from the table is a
// programming error, answered as what it is: 500.
func errorStatus(code string) int {
	if st, ok := statusOf[code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// errorBody is the contract's JSON error shape.
type errorBody struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields,omitempty"`
}

func errBody(code string, fields map[string]string) errorBody {
	return errorBody{Error: code, Fields: fields}
}

// abortError answers a JSON error, {"error":code,"fields":fields}, with
// code's status and stops the handler chain. Headers such as Retry-After
// are set by the caller before.
func abortError(c *gin.Context, code string, fields map[string]string) {
	c.AbortWithStatusJSON(errorStatus(code), errBody(code, fields))
}

// fail answers a failure in the request's format: a JSON error body, or
// for form posts a 303 to the error page with the code (and the first
// field) in the query, never a body, since a browser shows what it gets.
func (s *Server) fail(c *gin.Context, f intake.Format, code string, fields map[string]string) {
	if f == intake.FormatForm {
		q := url.Values{"error": {code}}
		if e := (&intake.Error{Fields: fields}); len(fields) > 0 {
			q.Set("field", e.FirstField())
		}
		c.Redirect(http.StatusSeeOther, withQuery(s.set.ErrorURL, q))
		c.Abort()
		return
	}
	abortError(c, code, fields)
}
