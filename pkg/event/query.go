package event

import (
	"errors"
	"time"

	"context"
)

// The read vocabulary both stores speak and the read roles (search, tier) use: which events, in
// which order, from where. Elasticsearch and PostgreSQL both implement reads in these terms, so
// the roles never name a store's types.

// Filter selects events by client, type and time.
type Filter struct {
	ClientIDs []string // at least one; matched exactly
	Types     []string // none: any type; matched exactly
	From      time.Time
	To        time.Time // From inclusive, To exclusive; the zero time leaves a bound open
}

// Position is a place in the one total order of the read API: timestamp (microseconds in both
// stores), then id (byte order: keyword sort in Elasticsearch, COLLATE "C" in PostgreSQL). It is
// what a cursor carries between pages, whichever store a page came from.
type Position struct {
	Timestamp time.Time
	ID        string
}

// Position is the event's place in the read order.
func (e Event) Position() Position { return Position{Timestamp: e.Timestamp, ID: e.ID} }

// PageQuery asks for one page of events matching Filter, in Position order.
type PageQuery struct {
	Filter
	Desc  bool      // newest first
	After *Position // strictly after this position in the page's order; nil for the first page
	Size  int
}

// Range is the half-open interval [From, To) of event timestamps, at microsecond precision.
type Range struct{ From, To time.Time }

// ErrTooMany means a range holds more events than the caller's limit (listing the ids of a
// verification bucket); the caller splits the range.
var ErrTooMany = errors.New("too many events in range")

// Reader is what both stores answer: pages in the read order, exact counts, and an event by
// id. Elasticsearch and PostgreSQL implement it alike, the tier store composes two of them, and
// search serves from one. Implementations must be safe for concurrent use.
type Reader interface {
	// Page returns up to q.Size events in (timestamp, id) order strictly after q.After.
	Page(ctx context.Context, q PageQuery) ([]Event, error)
	// Count returns the exact number of events matching f.
	Count(ctx context.Context, f Filter) (int64, error)
	// Get returns the newest event with the id (latest timestamp) or, with a non-zero day, the
	// one of that UTC day; or an error matching ErrNotFound. An event's identity is its id and
	// the UTC day of its timestamp, so one id may name an event on each of several days.
	Get(ctx context.Context, id string, day time.Time) (Event, error)
}
