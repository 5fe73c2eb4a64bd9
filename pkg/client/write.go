package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/spillway/spillway/pkg/event"
)

// Result is the ingest service's answer to a write.
type Result struct {
	// Accepted counts the request's events now stored, duplicates included (with AckAsync:
	// held by the ingest process).
	Accepted int `json:"accepted"`
	// Duplicates counts the events whose id was already stored: a retry whose earlier attempt
	// was stored although its answer was lost. They are stored once, not twice.
	Duplicates int `json:"duplicates"`
	// IDs are the events' ids in request order.
	IDs []string `json:"ids"`
}

// Post stores events in one request, retrying it as the RetryPolicy says, and returns the
// answer. It first fills in each event's missing id (a UUIDv7) and timestamp (now), in place,
// so that the caller may resend the same slice safely, and normalises timestamps to UTC at
// microsecond precision, as they are stored.
//
// A request is all or nothing: when any event is invalid the answer is an *Error whose Details
// name the events by their position in events, and nothing was stored. An Indexer sends the
// other events again by itself.
func (c *Client) Post(ctx context.Context, events []Event) (Result, error) {
	if len(events) == 0 {
		return Result{}, errors.New("client: post: no events")
	}
	var body []byte
	for i := range events {
		line, err := c.encode(&events[i])
		if err != nil {
			return Result{}, fmt.Errorf("client: post: event %d: %w", i, err)
		}
		body = append(body, line...)
	}
	res, _, err := c.post(ctx, body, len(events))
	return res, err
}

// wireEvent is an event as the ingest service takes it: without ingestedAt, which it refuses.
type wireEvent struct {
	ID        string          `json:"id"`
	ClientID  string          `json:"clientId"`
	Type      string          `json:"type,omitempty"`
	Timestamp string          `json:"timestamp"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

// encode gives e its id and timestamp if it has none and returns it as one NDJSON line.
func (c *Client) encode(e *Event) ([]byte, error) {
	for _, f := range [...]struct{ name, value string }{{"id", e.ID}, {"clientId", e.ClientID}, {"type", e.Type}} {
		if !utf8.ValidString(f.value) {
			// encoding/json would silently replace the bad bytes: another value than the caller's.
			return nil, fmt.Errorf("%s is not valid UTF-8", f.name)
		}
	}
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new id: %w", err)
		}
		e.ID = id.String()
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = c.now()
	}
	e.Timestamp = event.Truncate(e.Timestamp)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // store the payload as sent, not with "<" rewritten to "\u003c"
	err := enc.Encode(wireEvent{ID: e.ID, ClientID: e.ClientID, Type: e.Type,
		Timestamp: e.Timestamp.Format(event.TimeFormat), Payload: e.Payload})
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b.Bytes(), nil
}

// post sends an NDJSON body of n events, with retries, and returns the answer and the number
// of attempts.
func (c *Client) post(ctx context.Context, body []byte, n int) (Result, int, error) {
	u := c.ingest + "/api/v1/events"
	switch c.ack {
	case AckSearchable:
		u += "?wait=searchable"
	case AckAsync:
		u += "?ack=async"
	}
	if c.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write(body) // writes to a bytes.Buffer do not fail
		_ = zw.Close()
		body = zb.Bytes()
	}
	var res Result
	attempts, err := c.do(ctx, "post", n, func(ctx context.Context) (*http.Request, error) {
		req, err := c.newRequest(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		if c.gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
		return req, nil
	}, func(r *http.Response) error {
		res = Result{}
		return json.NewDecoder(r.Body).Decode(&res)
	})
	return res, attempts, err
}
