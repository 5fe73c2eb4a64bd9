// Package httpx is the HTTP plumbing the three services share: the JSON error envelope and the
// one error-to-status mapper, health and readiness, request ids, metrics middleware, and a
// server lifecycle that stops intake before it drains.
package httpx

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Error is an API error with its status. Handlers may return one directly; other errors are
// mapped by StatusOf.
type Error struct {
	Status     int
	Code       string
	Message    string
	Details    []event.FieldError
	RetryAfter time.Duration
	Err        error // the cause, logged for 5xx, never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Envelope is the body of every error response: {"error": {"code", "message", "details"}}.
type Envelope struct {
	Error EnvelopeError `json:"error"`
}

// EnvelopeError is the inside of Envelope.
type EnvelopeError struct {
	Code    string             `json:"code"`
	Message string             `json:"message"`
	Details []event.FieldError `json:"details,omitempty"`
}

// RetryAfterer is implemented by errors that know how long a client should wait.
type RetryAfterer interface{ RetryAfter() time.Duration }

// DefaultRetryAfter is sent with 429 and 503 when the error does not say.
const DefaultRetryAfter = time.Second

var sentinelStatus = []struct {
	err    error
	status int
	code   string
}{
	{event.ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{event.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{event.ErrForbidden, http.StatusForbidden, "forbidden"},
	{event.ErrNotFound, http.StatusNotFound, "not_found"},
	{event.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{event.ErrUnsupportedMedia, http.StatusUnsupportedMediaType, "unsupported_media_type"},
	{event.ErrOverloaded, http.StatusTooManyRequests, "overloaded"},
	{event.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
}

// ToError maps any error to the API error the client sees. It is the one error-to-status mapper:
// sentinels from package event choose the status; anything unrecognised is a 500 whose message
// does not leak internals.
func ToError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		out := *e
		if out.Code == "" {
			out.Code = codeFor(out.Status)
		}
		return &out
	}
	for _, s := range sentinelStatus {
		if errors.Is(err, s.err) {
			out := &Error{Status: s.status, Code: s.code, Message: err.Error(), Err: err}
			var ve *event.ValidationError
			if errors.As(err, &ve) {
				out.Details = ve.Details
			}
			var ra RetryAfterer
			if errors.As(err, &ra) {
				out.RetryAfter = ra.RetryAfter()
			}
			return out
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Err: err}
}

func codeFor(status int) string {
	for _, s := range sentinelStatus {
		if s.status == status {
			return s.code
		}
	}
	switch status {
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestTimeout:
		return "request_timeout"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

// WriteError writes err as the JSON envelope with its status. 5xx causes are logged (the client
// sees only a generic message); 429 and 503 carry Retry-After.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	e := ToError(err)
	if e.Status >= 500 && logger != nil {
		logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status,
			"request_id", RequestID(r.Context()), "err", e.Error())
	}
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		ra := e.RetryAfter
		if ra <= 0 {
			ra = DefaultRetryAfter
		}
		secs := int((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	WriteJSON(w, e.Status, Envelope{Error: EnvelopeError{Code: e.Code, Message: e.Message, Details: e.Details}})
}

// WriteJSON writes v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// NotFound and MethodNotAllowed answer unknown routes in the envelope, for mux's handlers.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route: " + r.Method + " " + r.URL.Path})
}

// MethodNotAllowed answers a known path with a method it does not serve.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, nil, &Error{Status: http.StatusMethodNotAllowed, Message: "method " + r.Method + " not allowed on " + r.URL.Path})
}
