package event

import (
	"errors"
	"time"
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
