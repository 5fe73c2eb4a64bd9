package event

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Format is how a request body holds its events.
type Format int

const (
	// FormatJSON is one event object or a JSON array of event objects (application/json).
	FormatJSON Format = iota
	// FormatNDJSON is one event object per line; blank lines are ignored (application/x-ndjson).
	FormatNDJSON
)

// MaxDetails bounds the FieldErrors one ValidationError lists, so that a request of 10,000 bad
// events gets a short answer. The message says how many problems there were in all.
const MaxDetails = 100

// Decode reads every event of a request body and applies the API's rules. now is the receive
// time: it becomes each event's IngestedAt, and its Timestamp when the event has none.
//
// Decoding is all or nothing. If any event breaks a rule, Decode returns a *ValidationError
// listing each problem by event index (0-based, in request order; for NDJSON the n-th non-blank
// line), field and rule, and no events. More than lim.MaxEvents events yield an error matching
// ErrTooLarge. Events without an id get NewID(); times are at storage precision in UTC.
func Decode(body []byte, format Format, now time.Time, lim Limits) ([]Event, error) {
	d := decoder{now: Truncate(now), lim: lim}
	var err error
	if format == FormatNDJSON {
		err = d.ndjson(body)
	} else {
		err = d.json(body)
	}
	if err != nil {
		return nil, err
	}
	if d.total == 0 {
		return nil, &ValidationError{Message: "the request holds no events",
			Details: []FieldError{{Index: -1, Field: "", Message: "at least one event is required"}}}
	}
	if d.problems > 0 {
		msg := fmt.Sprintf("%d of %d events invalid; nothing was stored", d.badEvents, d.total)
		if d.problems > len(d.details) {
			msg += fmt.Sprintf(" (the first %d of %d problems are listed)", len(d.details), d.problems)
		}
		return nil, &ValidationError{Message: msg, Details: d.details}
	}
	return d.events, nil
}

type decoder struct {
	now       time.Time
	lim       Limits
	events    []Event
	details   []FieldError
	problems  int // may exceed len(details)
	badEvents int
	total     int
}

func (d *decoder) add(index int, field, msg string) {
	d.problems++
	if len(d.details) < MaxDetails {
		d.details = append(d.details, FieldError{Index: index, Field: field, Message: msg})
	}
}

func (d *decoder) tooMany() error {
	return tooLarge(fmt.Sprintf("more than %d events in one request (ingest.max_events)", d.lim.MaxEvents))
}

// tooLarge is a limit error: it matches ErrTooLarge, and its message is only the limit.
type tooLarge string

func (e tooLarge) Error() string        { return string(e) }
func (e tooLarge) Is(target error) bool { return target == ErrTooLarge }

// syntax turns a fatal JSON error into the request's ValidationError.
func (d *decoder) syntax(index int, err error) error {
	var se *syntaxError
	if !errors.As(err, &se) {
		return err
	}
	d.add(index, "", se.Error())
	return &ValidationError{Message: se.Error() + "; nothing was stored", Details: d.details}
}

func (d *decoder) json(body []byte) error {
	s := &scanner{buf: body}
	if s.atEnd() {
		return &ValidationError{Message: "the request body is empty",
			Details: []FieldError{{Index: -1, Message: "a JSON event object or array of events is required"}}}
	}
	switch s.peek() {
	case '{':
		d.total = 1
		if err := d.event(s, 0); err != nil {
			return d.syntax(0, err)
		}
	case '[':
		s.pos++
		if s.peek() == ']' {
			s.pos++
			break
		}
		for i := 0; ; i++ {
			if i >= d.lim.MaxEvents {
				return d.tooMany()
			}
			d.total++
			if s.peek() == '{' {
				if err := d.event(s, i); err != nil {
					return d.syntax(i, err)
				}
			} else {
				if err := s.skip(1); err != nil {
					return d.syntax(i, err)
				}
				d.badEvents++
				d.add(i, "", "must be a JSON object")
			}
			if c := s.peek(); c == ',' {
				s.pos++
				continue
			} else if c == ']' {
				s.pos++
				break
			}
			return d.syntax(i, s.unexpected("',' or ']'"))
		}
	default:
		return d.syntax(-1, s.unexpected("a JSON object or array"))
	}
	if !s.atEnd() {
		return d.syntax(-1, s.fail("unexpected data after the JSON value (use application/x-ndjson for one event per line)"))
	}
	return nil
}

func (d *decoder) ndjson(body []byte) error {
	for line := 1; len(body) > 0; line++ {
		var cur []byte
		cur, body, _ = bytes.Cut(body, []byte{'\n'})
		s := &scanner{buf: cur}
		if s.atEnd() {
			continue // blank line
		}
		i := d.total
		if i >= d.lim.MaxEvents {
			return d.tooMany()
		}
		d.total++
		var err error
		if s.peek() != '{' {
			if err = s.skip(1); err == nil {
				d.badEvents++
				d.add(i, "", fmt.Sprintf("line %d: must be a JSON object", line))
			}
		} else {
			err = d.event(s, i)
		}
		if err == nil && !s.atEnd() {
			err = s.fail("unexpected data after the event (one event per line)")
		}
		if err != nil {
			var se *syntaxError
			if !errors.As(err, &se) {
				return err
			}
			// A line stands alone: report it and go on with the next one.
			d.badEvents++
			d.add(i, "", fmt.Sprintf("line %d: %s", line, se.Error()))
		}
	}
	return nil
}

// Top-level fields of an event.
const (
	fieldID = 1 << iota
	fieldClientID
	fieldType
	fieldTimestamp
	fieldPayload
)

var fieldBits = map[string]int{"id": fieldID, "clientId": fieldClientID, "type": fieldType, "timestamp": fieldTimestamp, "payload": fieldPayload}

// eventReader reads one event object.
type eventReader struct {
	d     *decoder
	s     *scanner
	index int
	e     Event
	bad   bool // a problem was reported for this event
	set   int  // fields holding a valid, non-null value
}

func (r *eventReader) fail(field, msg string) {
	r.bad = true
	r.d.add(r.index, field, msg)
}

// event reads one event object; the scanner is at its '{'. Rule violations are added to d;
// only malformed JSON is returned.
func (d *decoder) event(s *scanner, index int) error {
	r := eventReader{d: d, s: s, index: index, e: Event{IngestedAt: d.now, Timestamp: d.now}}
	s.pos++
	seen := 0
	if s.peek() == '}' {
		s.pos++
	} else {
	fields:
		for {
			key, _, err := s.str(true)
			if err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			bit := fieldBits[key]
			switch {
			case bit == 0:
				r.fail(printable(key, 64), "unknown field (allowed: id, clientId, type, timestamp, payload)")
				err = s.skip(2)
			case seen&bit != 0:
				r.fail(key, "duplicate key")
				err = s.skip(2)
			default:
				seen |= bit
				err = r.field(key, bit)
			}
			if err != nil {
				return err
			}
			more, err := s.more('}')
			if err != nil {
				return err
			}
			if !more {
				break fields
			}
		}
	}
	if seen&fieldClientID == 0 {
		r.fail("clientId", "required")
	}
	if r.bad {
		d.badEvents++
		return nil
	}
	if r.set&fieldID == 0 {
		r.e.ID = NewID()
	}
	d.events = append(d.events, r.e)
	return nil
}

// str reads a string field's value; ok is false when the value is null or broke a rule (which
// is then reported).
func (r *eventReader) str(field string) (v string, ok bool, err error) {
	s := r.s
	switch s.peek() {
	case 'n':
		return "", false, s.literal("null")
	case '"':
		v, p, err := s.str(true)
		if err != nil {
			return "", false, err
		}
		if p != "" {
			r.fail(field, p)
			return "", false, nil
		}
		return v, true, nil
	default:
		if err := s.skip(2); err != nil {
			return "", false, err
		}
		r.fail(field, "must be a string")
		return "", false, nil
	}
}

// field reads the value of one known field. Null means absent for every field; for clientId
// that is reported as "required".
func (r *eventReader) field(key string, bit int) error {
	s := r.s
	if bit == fieldPayload {
		switch s.peek() {
		case 'n':
			return s.literal("null")
		case '{':
			p, problem, err := readPayload(s, r.d.lim)
			if err != nil {
				return err
			}
			if problem != "" {
				r.fail("payload", problem)
				return nil
			}
			r.e.Payload = p
			r.set |= bit
			return nil
		default:
			if err := s.skip(2); err != nil {
				return err
			}
			r.fail("payload", "must be a JSON object")
			return nil
		}
	}
	null := s.peek() == 'n'
	v, ok, err := r.str(key)
	if err != nil || !ok {
		if err == nil && null && bit == fieldClientID {
			r.fail("clientId", "required")
		}
		return err
	}
	var problem string
	switch bit {
	case fieldClientID:
		problem = clientIDProblem(v)
		r.e.ClientID = v
	case fieldID:
		if !ValidID(v) {
			problem = idRule
		}
		r.e.ID = v
	case fieldType:
		problem = typeProblem(v)
		r.e.Type = v
	case fieldTimestamp:
		r.e.Timestamp, problem = parseTimestamp(v, r.d.now, r.d.lim)
	}
	if problem != "" {
		r.fail(key, problem)
		return nil
	}
	r.set |= bit
	return nil
}
