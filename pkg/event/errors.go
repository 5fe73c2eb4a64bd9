package event

import "time"

// Error is an outcome that says more than its sentinel: the message the client reads, the
// events or parameters concerned, how long to wait, and the cause. Kind, one of the sentinels,
// decides the answer: errors.Is(err, Kind) is true, and the mapper (httpx.ToError) takes the
// status and code from Kind alone, the rest from the fields. Wrapping an *Error keeps its
// message: the client never reads the wrapping context.
type Error struct {
	Kind       error         // a sentinel of this package: ErrOverloaded, ErrForbidden, …
	Message    string        // what the client reads; Kind's text when empty
	Details    []FieldError  // the events or parameters concerned (at most MaxDetails)
	RetryAfter time.Duration // for ErrRateLimited, ErrOverloaded, ErrUnavailable, ErrDeadline; 0: the mapper's default
	Err        error         // the cause, for logs; never sent
}

// Error is the message, and the cause when there is one (for logs).
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Kind != nil {
		msg = e.Kind.Error()
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Is matches Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
