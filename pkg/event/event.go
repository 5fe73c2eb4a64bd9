// Package event is Spillway's data model: the event clients post and read, its identifiers and
// the errors that name every outcome of a request (the sentinels and Error), which httpx maps to
// HTTP statuses. It imports nothing of Spillway's.
package event

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Event is one client event as the API accepts and returns it.
//
// Timestamp and IngestedAt are kept at microsecond precision (see Truncate) in every store, so
// that Elasticsearch and PostgreSQL order events identically.
type Event struct {
	ID         string          `json:"id"`
	ClientID   string          `json:"clientId"`
	Type       string          `json:"type,omitempty"`
	Timestamp  time.Time       `json:"timestamp"`
	IngestedAt time.Time       `json:"ingestedAt"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

// Precision is the resolution at which Spillway stores event times: PostgreSQL's timestamptz
// resolution, finer than Elasticsearch's date (milliseconds), so the index uses date_nanos.
const Precision = time.Microsecond

// Truncate brings t to UTC at the storage precision.
func Truncate(t time.Time) time.Time { return t.UTC().Truncate(Precision) }

// TimeFormat is how event times are written to JSON and to Elasticsearch: RFC 3339 in UTC with
// exactly six fractional digits, so that string order equals time order.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// NewID returns a server-assigned event id: a UUIDv7, unique and ordered by creation time.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Sentinel errors: every outcome of a request other than success. Roles return them (wrapped,
// or as an *Error that adds a message, details or a delay); one mapper, httpx.ToError, turns
// each into its status and code, and httpx's tests tie every one to api/openapi.yaml.
var (
	// ErrInvalid marks a request the client must change before retrying (400).
	ErrInvalid = errors.New("invalid")
	// ErrRejected marks events the store refused for good, for their content, while the
	// request's other events are stored (400).
	ErrRejected = errors.New("rejected")
	// ErrNotFound marks a missing event (404).
	ErrNotFound = errors.New("not found")
	// ErrRequestTimeout marks a request the client did not finish sending in time (408).
	ErrRequestTimeout = errors.New("request timeout")
	// ErrTooLarge marks a body or batch over a configured limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrUnsupportedMedia marks a content type or encoding the API does not read (415).
	ErrUnsupportedMedia = errors.New("unsupported media type")
	// ErrRateLimited marks a principal over its rate; retry after the delay (429).
	ErrRateLimited = errors.New("rate limited")
	// ErrOverloaded marks a request refused to keep memory or waiting bounded; retry later (429).
	ErrOverloaded = errors.New("overloaded")
	// ErrUnavailable marks a store that is unreachable or refusing; retry later (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrDeadline marks work that ran out of the time the server gives it; retry later (503).
	// It is context.DeadlineExceeded, so a context's deadline is this outcome wherever it
	// surfaces.
	ErrDeadline = context.DeadlineExceeded
	// ErrCanceled marks a request that ended before its answer: the client went away. It is
	// context.Canceled. No client reads the answer; it is recorded as 499, nginx's "client
	// closed request".
	ErrCanceled = context.Canceled
	// ErrUnauthenticated marks a request without valid credentials (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden marks a request the credentials do not allow (403).
	ErrForbidden = errors.New("forbidden")
)

// FieldError names one rule an event or parameter broke. Index is the event's position in the
// request, -1 when the error is not about one event (a query parameter, an empty body): in JSON
// "index" is then left out, as api/openapi.yaml documents it (an index is never negative).
type FieldError struct {
	Index   int    `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// fieldErrorJSON is FieldError on the wire.
type fieldErrorJSON struct {
	Index   *int   `json:"index,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// MarshalJSON leaves "index" out when Index is negative.
func (f FieldError) MarshalJSON() ([]byte, error) {
	w := fieldErrorJSON{Field: f.Field, Message: f.Message}
	if f.Index >= 0 {
		w.Index = &f.Index
	}
	// Messages quote client input: keep <, > and & as they are, like the envelope's encoder.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads an absent "index" as -1.
func (f *FieldError) UnmarshalJSON(b []byte) error {
	var w fieldErrorJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = FieldError{Index: -1, Field: w.Field, Message: w.Message}
	if w.Index != nil {
		f.Index = *w.Index
	}
	return nil
}

// ValidationError lists every rule a request broke. It matches ErrInvalid with errors.Is.
type ValidationError struct {
	Message string
	Details []FieldError
}

func (e *ValidationError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if len(e.Details) > 0 {
		d := e.Details[0]
		return d.Field + ": " + d.Message
	}
	return "invalid request"
}

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }
