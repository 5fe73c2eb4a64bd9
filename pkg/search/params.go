package search

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spillway/spillway/pkg/event"
)

// Limits on query values. clientId and type follow ingest's rules (1–128 bytes of UTF-8), so a
// value search refuses can never have been stored.
const (
	maxValueBytes = 128
	maxTypes      = 100
)

// Parameter names of the read API.
const (
	pClientID = "clientId"
	pType     = "type"
	pFrom     = "from"
	pTo       = "to"
	pLimit    = "limit"
	pOrder    = "order"
	pCursor   = "cursor"
	pDay      = "day"
)

// listQuery is a validated GET /api/v1/events request.
type listQuery struct {
	filter event.Filter
	desc   bool
	limit  int
	after  *event.Position
}

func (q listQuery) binding() binding {
	return binding{clientIDs: q.filter.ClientIDs, types: q.filter.Types, from: q.filter.From, to: q.filter.To, desc: q.desc}
}

// problems collects every rule a request broke, each naming its parameter.
type problems []event.FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, event.FieldError{Index: -1, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &event.ValidationError{Details: p}
}

// parseValues parses the raw query string strictly: malformed escapes and parameters not in
// allowed are errors (a misspelt parameter must not silently widen a query).
func parseValues(raw string, allowed ...string) (url.Values, problems) {
	var bad problems
	vals, err := url.ParseQuery(raw)
	if err != nil {
		bad.add("query", "malformed query string: %v", err)
		return nil, bad
	}
	var unknown []string
	for k := range vals {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		name := k
		if len(name) > 64 {
			name = name[:64] + "…"
		}
		if len(allowed) == 0 {
			bad.add(name, "unknown parameter (this endpoint takes none)")
			continue
		}
		bad.add(name, "unknown parameter (allowed: %s)", strings.Join(allowed, ", "))
	}
	return vals, bad
}

// single returns the value of a parameter that may appear at most once.
func single(vals url.Values, name string, bad *problems) (string, bool) {
	v, ok := vals[name]
	if !ok {
		return "", false
	}
	if len(v) > 1 {
		bad.add(name, "must be given at most once")
		return "", false
	}
	return v[0], true
}

// values checks a repeatable exact-match parameter (clientId, type).
func values(vals url.Values, name string, max int, bad *problems) []string {
	v := vals[name]
	if len(v) > max {
		bad.add(name, "at most %d values, got %d", max, len(v))
		return nil
	}
	for _, s := range v {
		switch {
		case len(s) == 0 || len(s) > maxValueBytes:
			bad.add(name, "each value must be 1-%d bytes, got %d", maxValueBytes, len(s))
			return nil
		case !utf8.ValidString(s):
			bad.add(name, "must be valid UTF-8")
			return nil
		case strings.IndexFunc(s, unicode.IsControl) >= 0:
			bad.add(name, "must not contain control characters")
			return nil
		}
	}
	return v
}

// parseTime reads an RFC 3339 time. An unescaped '+' in a query string arrives as a space;
// RFC 3339 has no spaces, so one is read back as the '+' of a zone offset.
func parseTime(vals url.Values, name string, bad *problems) time.Time {
	s, ok := single(vals, name, bad)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
	if err != nil {
		bad.add(name, "must be an RFC 3339 time like 2026-01-02T15:04:05Z (encode '+' as %%2B), got %q", truncate(s))
		return time.Time{}
	}
	return t.UTC()
}

// parseDay reads a UTC date (YYYY-MM-DD): the day part of an event's identity.
func parseDay(vals url.Values, name string, bad *problems) time.Time {
	s, ok := single(vals, name, bad)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		bad.add(name, "must be a UTC date like 2026-01-02, got %q", truncate(s))
		return time.Time{}
	}
	return t
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// parseFilter reads clientId (required), type, and — when withTimes — from and to.
func (s *Service) parseFilter(vals url.Values, withTimes bool, bad *problems) event.Filter {
	var f event.Filter
	if len(vals[pClientID]) == 0 {
		bad.add(pClientID, "is required (repeat it for several clients)")
	} else {
		f.ClientIDs = values(vals, pClientID, s.cfg.MaxClientIDs, bad)
	}
	f.Types = values(vals, pType, maxTypes, bad)
	if withTimes {
		f.From = parseTime(vals, pFrom, bad)
		f.To = parseTime(vals, pTo, bad)
		// [from, to) with to == from is an empty range: a valid question whose answer is empty.
		// to before from is refused: the bounds are most likely swapped.
		if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
			bad.add(pTo, "must not be before from (from is inclusive, to exclusive)")
		}
	}
	return f
}

// parseList validates GET /api/v1/events.
func (s *Service) parseList(raw string) (listQuery, error) {
	vals, bad := parseValues(raw, pClientID, pType, pFrom, pTo, pLimit, pOrder, pCursor)
	if vals == nil {
		return listQuery{}, bad.err()
	}
	q := listQuery{filter: s.parseFilter(vals, true, &bad), limit: s.cfg.DefaultLimit}
	if v, ok := single(vals, pLimit, &bad); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxLimit {
			bad.add(pLimit, "must be an integer from 1 to %d, got %q", s.cfg.MaxLimit, truncate(v))
		} else {
			q.limit = n
		}
	}
	if v, ok := single(vals, pOrder, &bad); ok {
		switch v {
		case "asc":
		case "desc":
			q.desc = true
		default:
			bad.add(pOrder, "must be asc or desc, got %q", truncate(v))
		}
	}
	cursor, hasCursor := single(vals, pCursor, &bad)
	if len(bad) > 0 {
		return listQuery{}, bad.err()
	}
	if hasCursor {
		// Checked last: the cursor is verified against the other parameters.
		key, err := s.signer.decodeCursor(q.binding(), cursor)
		if err != nil {
			bad.add(pCursor, "%v; start again without a cursor", err)
			return listQuery{}, bad.err()
		}
		q.after = &key
	}
	return q, nil
}

// parseCount validates GET /api/v1/events/count.
func (s *Service) parseCount(raw string) (event.Filter, error) {
	vals, bad := parseValues(raw, pClientID, pType, pFrom, pTo)
	if vals == nil {
		return event.Filter{}, bad.err()
	}
	f := s.parseFilter(vals, true, &bad)
	return f, bad.err()
}

// parseStream validates GET /api/v1/events/stream (times do not apply: the stream starts now
// or at its Last-Event-ID).
func (s *Service) parseStream(raw string) (event.Filter, error) {
	vals, bad := parseValues(raw, pClientID, pType)
	if vals == nil {
		return event.Filter{}, bad.err()
	}
	f := s.parseFilter(vals, false, &bad)
	return f, bad.err()
}
