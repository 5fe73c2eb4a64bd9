// Package httpx is the HTTP plumbing the three services share: the JSON error envelope and the
// one error-to-status mapper, health and readiness, request ids, metrics middleware, and a
// server lifecycle that stops intake before it drains.
package httpx

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Answer is what the client is told about an error: ToError's result, which WriteError sends.
type Answer struct {
	Status     int
	Code       string
	Message    string
	Details    []event.FieldError
	RetryAfter time.Duration // sent with 429 and 503; DefaultRetryAfter when 0
}

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

// DefaultRetryAfter is sent with 429 and 503 when the error does not say.
const DefaultRetryAfter = time.Second

// StatusClientClosedRequest is the status recorded for a request whose client went away before
// its answer (event.ErrCanceled): nginx's 499. HTTP has none for it and no client reads it, but
// the metrics then tell a client that left from a server that failed (a 5xx, logged as an error)
// or answered.
const StatusClientClosedRequest = 499

// errMethodNotAllowed is the one outcome only the router knows: a known path, another method.
var errMethodNotAllowed = errors.New("method not allowed")

// outcome is one row of the mapping: an error kind and the status and code it gets.
type outcome struct {
	kind    error
	status  int
	code    string
	message string // sent instead of the text of an error that is not an *event.Error, when set
}

// outcomes is the one table from error to status and code. An *event.Error gets its Kind's row;
// any other error the first row it matches with errors.Is, so where an error matches several
// the order decides: a client that went away first (nobody reads the answer, whatever else
// failed), a deadline before the unavailability a store wraps it in. Messages are set where the
// error's own text would name internals.
var outcomes = []outcome{
	{event.ErrCanceled, StatusClientClosedRequest, "canceled", "the client closed the request before its answer"},
	{event.ErrInvalid, http.StatusBadRequest, "invalid_request", ""},
	{event.ErrRejected, http.StatusBadRequest, "rejected", ""},
	{event.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", ""},
	{event.ErrForbidden, http.StatusForbidden, "forbidden", ""},
	{event.ErrNotFound, http.StatusNotFound, "not_found", ""},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed", ""},
	{event.ErrRequestTimeout, http.StatusRequestTimeout, "request_timeout", ""},
	{event.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", ""},
	{event.ErrUnsupportedMedia, http.StatusUnsupportedMediaType, "unsupported_media_type", ""},
	{event.ErrRateLimited, http.StatusTooManyRequests, "rate_limited", ""},
	{event.ErrOverloaded, http.StatusTooManyRequests, "overloaded", ""},
	{event.ErrDeadline, http.StatusServiceUnavailable, "unavailable", "the request took longer than the server allows; retry later"},
	{event.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", ""},
}

// ToError maps any error to the answer the client gets. It is the one error-to-status mapper:
// roles return errors of package event and never choose a status. An *event.Error (the
// outermost, when errors wrap errors) is answered by its Kind with its message, details and
// delay; another error by the first sentinel it matches, with its own text as the message (and
// a *event.ValidationError's details); anything unrecognised is a 500 whose message does not
// leak internals.
func ToError(err error) *Answer {
	var typed *event.Error
	if errors.As(err, &typed) {
		for _, o := range outcomes {
			if o.kind == typed.Kind {
				msg := typed.Message
				if msg == "" {
					msg = cmp.Or(o.message, typed.Kind.Error())
				}
				return &Answer{Status: o.status, Code: o.code, Message: msg, Details: typed.Details, RetryAfter: typed.RetryAfter}
			}
		}
	}
	for _, o := range outcomes {
		if errors.Is(err, o.kind) {
			a := &Answer{Status: o.status, Code: o.code, Message: cmp.Or(o.message, err.Error())}
			var ve *event.ValidationError
			if errors.As(err, &ve) {
				a.Details = ve.Details
			}
			return a
		}
	}
	return &Answer{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

// WriteError writes err as the JSON envelope with the status ToError gives it. 5xx errors are
// logged with their causes (the client sees only the message); 429 and 503 carry Retry-After.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	a := ToError(err)
	if a.Status >= 500 && logger != nil {
		logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", a.Status,
			"request_id", RequestID(r.Context()), "err", err)
	}
	if a.Status == http.StatusTooManyRequests || a.Status == http.StatusServiceUnavailable {
		ra := a.RetryAfter
		if ra <= 0 {
			ra = DefaultRetryAfter
		}
		secs := int((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	WriteJSON(w, a.Status, Envelope{Error: EnvelopeError{Code: a.Code, Message: a.Message, Details: a.Details}})
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
	WriteError(w, r, nil, &event.Error{Kind: event.ErrNotFound, Message: "no such route: " + r.Method + " " + r.URL.Path})
}

// MethodNotAllowed answers a known path with a method it does not serve.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, nil, &event.Error{Kind: errMethodNotAllowed, Message: "method " + r.Method + " not allowed on " + r.URL.Path})
}
