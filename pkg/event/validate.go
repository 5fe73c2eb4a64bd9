package event

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits bound what Decode accepts. Zero values are not defaults: callers pass the configured
// ingest limits (see config.Ingest).
type Limits struct {
	MaxEvents       int           // events in one request (more: ErrTooLarge)
	MaxPayloadBytes int           // serialized (compacted) payload size
	MaxPayloadDepth int           // nesting of objects and arrays; the payload object is level 1
	MaxPayloadKeys  int           // object keys in one payload, counted at every level
	MaxFutureSkew   time.Duration // how far after the receive time a timestamp may be
	MaxPastAge      time.Duration // how far before the receive time a timestamp may be
}

// Field limits of the API.
const (
	MaxIDLen       = 128 // id: 1-128 characters of [A-Za-z0-9._:-]
	MaxClientIDLen = 128 // clientId: 1-128 bytes of UTF-8
	MaxTypeLen     = 128 // type: at most 128 bytes
)

// The storable time range: the index maps @timestamp as date_nanos, which holds 1970-01-01
// through 2262-04-11; Elasticsearch rejects anything outside it.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
)

// Storable reports whether t is inside the time range the stores can hold (1970-01-01 up to
// 2262-04-11, Elasticsearch's date_nanos): no event exists outside it.
func Storable(t time.Time) bool { return !t.Before(minTime) && t.Before(maxTime) }

// ValidID reports whether id may be an event id: 1-128 characters of A-Z a-z 0-9 . _ : -.
// Such ids need no escaping anywhere (URLs, Elasticsearch _id, SQL text, log lines).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// idRule is the message for an invalid id.
const idRule = "must be 1-128 characters of A-Z a-z 0-9 . _ : -"

// clientIDProblem returns why clientID is not acceptable, or "".
func clientIDProblem(clientID string) string {
	switch {
	case clientID == "":
		return "must not be empty"
	case len(clientID) > MaxClientIDLen:
		return fmt.Sprintf("must be at most %d bytes, got %d", MaxClientIDLen, len(clientID))
	case !utf8.ValidString(clientID):
		return "must be valid UTF-8"
	case hasControl(clientID):
		return "must not contain control characters"
	}
	return ""
}

// typeProblem returns why typ is not acceptable, or "". Types are identifiers like clientIds, so
// control characters are refused too (PostgreSQL text cannot even hold NUL).
func typeProblem(typ string) string {
	switch {
	case len(typ) > MaxTypeLen:
		return fmt.Sprintf("must be at most %d bytes, got %d", MaxTypeLen, len(typ))
	case !utf8.ValidString(typ):
		return "must be valid UTF-8"
	case hasControl(typ):
		return "must not contain control characters"
	}
	return ""
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// parseTimestamp parses an RFC 3339 time and checks it against the receive time now. The
// result is at storage precision (Truncate).
//
// The past bound exists because indices are daily by event time: without it, one request could
// create thousands of indices (one per distinct day) and exhaust the cluster's shard limit.
func parseTimestamp(s string, now time.Time, lim Limits) (time.Time, string) {
	const rule = "must be an RFC 3339 time such as 2026-01-02T15:04:05.123Z"
	if len(s) > 64 {
		return time.Time{}, rule
	}
	// RFC 3339 allows lower-case t and z; Go's parser does not.
	t, err := time.Parse(time.RFC3339Nano, strings.Map(func(r rune) rune {
		switch r {
		case 't':
			return 'T'
		case 'z':
			return 'Z'
		}
		return r
	}, s))
	if err != nil {
		return time.Time{}, rule
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return time.Time{}, rule + " (offset out of range)"
	}
	t = Truncate(t)
	switch {
	case t.Before(minTime) || !t.Before(maxTime):
		return time.Time{}, "must be between 1970-01-01 and 2262-04-10 (the index's date_nanos range)"
	case t.After(now.Add(lim.MaxFutureSkew)):
		return time.Time{}, "is more than " + shortDuration(lim.MaxFutureSkew) + " in the future (ingest.max_future_skew)"
	case t.Before(now.Add(-lim.MaxPastAge)):
		return time.Time{}, "is more than " + shortDuration(lim.MaxPastAge) + " in the past (ingest.max_past_age)"
	}
	return t, ""
}

// shortDuration prints 24h instead of 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
