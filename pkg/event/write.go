package event

import "time"

// The write vocabulary between ingest and the store it writes to: what became of each event,
// and how each bulk request went (for metrics and ingest's circuit breaker).

// WriteResult is what became of one event in a write.
type WriteResult int

// Results of one event.
const (
	// Pending: not acknowledged before the context ended. The event may or may not be stored;
	// writing it again with the same id is safe.
	Pending WriteResult = iota
	// Created: stored by this write, durably (translog fsynced on every in-sync copy).
	Created
	// Duplicate: an event with this (id, UTC day) already exists. A retried event is a
	// success, not an error.
	Duplicate
	// Rejected: the store refused the document (a 4xx other than 409 and 429, and not an index
	// block). Retrying will not help.
	Rejected
)

func (r WriteResult) String() string {
	switch r {
	case Created:
		return "created"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	}
	return "pending"
}

// Outcome is the result of one event with the store's reason for failures.
type Outcome struct {
	Result   WriteResult
	Status   int    // the item's status in the bulk response; 0 if none arrived
	Reason   string // why it was rejected, or why the last attempt failed
	Attempts int    // times it was sent
}

// Flush describes one bulk request as seen on the wire.
type Flush struct {
	Searchable bool          // sent with refresh=wait_for
	Events     int           // items in the request
	Bytes      int64         // request body size
	Waited     time.Duration // how long its first event waited for it to be sent
	Took       time.Duration // until the response was read (or the transport error)
	Status     int           // HTTP status; 0 when no response arrived
	Err        error         // transport error (connection refused, reset, timeout)
	Throttled  int           // items answered 429 (the cluster's write queue is full)
	Limit      int           // bulk requests allowed in flight after this answer
}

// Failed reports whether the cluster was unreachable or answered with a server error, as opposed
// to answering (possibly with per-item failures).
func (f Flush) Failed() bool { return f.Err != nil || f.Status >= 500 }
