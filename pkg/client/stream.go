package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamEvent is one event of a live stream.
type StreamEvent struct {
	Event Event
	// LastEventID is the stream's resume token after this event: Stream with it continues
	// right after this event, on any search replica that shares the cursor key.
	LastEventID string
}

// Stream follows q's events live: every matching event indexed after the subscription (or,
// with lastEventID, after that point of an earlier stream of the same query), as the search
// service's Server-Sent Events stream delivers it. When the connection drops, ends (a replica
// shutting down) or stays silent for StreamIdleTimeout, Stream reconnects with backoff and
// Last-Event-ID set to the last message received in full, so the events continue without a
// gap and without a repeat.
//
// The iteration ends when the loop breaks, or with one error: ctx's when it ends, an *Error
// when the server refuses the stream (a 400 for an unknown or foreign lastEventID, 401, 403),
// or the last error when reconnecting gives up (RetryPolicy.MaxElapsed after the last
// connection that succeeded). Only q.ClientIDs and q.Types apply.
func (c *Client) Stream(ctx context.Context, q Query, lastEventID string) iter.Seq2[StreamEvent, error] {
	return func(yield func(StreamEvent, error) bool) {
		if !q.From.IsZero() || !q.To.IsZero() || q.Desc || q.Limit != 0 {
			yield(StreamEvent{}, errors.New("client: stream: only ClientIDs and Types apply to a stream"))
			return
		}
		s := &stream{c: c, q: q, last: lastEventID}
		b := c.backoff()
		for n := 1; ; n++ {
			start := c.now()
			connected, stopped, err := s.connect(ctx, yield)
			if stopped {
				return
			}
			if ctx.Err() != nil {
				yield(StreamEvent{}, fmt.Errorf("stream: %w", context.Cause(ctx)))
				return
			}
			if connected {
				b.reset()
			}
			if err == nil {
				err = errStreamEnded
			}
			wait, again := b.next(err, s.retry)
			if c.onAttempt != nil {
				c.onAttempt(Attempt{Op: "stream", N: n, Status: s.status, Err: err, Duration: c.now().Sub(start), Wait: wait})
			}
			if connected {
				n = 0
			}
			if !again {
				yield(StreamEvent{}, fmt.Errorf("stream: %w", err))
				return
			}
			if err := c.sleep(ctx, wait); err != nil {
				yield(StreamEvent{}, fmt.Errorf("stream: %w", err))
				return
			}
		}
	}
}

// errStreamEnded is a stream the server closed: a replica shutting down, or a reader it dropped.
var errStreamEnded = errors.New("the server ended the stream")

// maxSSELine bounds one line of the stream: an event with the largest payload the API accepts
// (256 KiB by default) fits many times over.
const maxSSELine = 4 << 20

// stream is the state kept across one Stream's connections.
type stream struct {
	c      *Client
	q      Query
	last   string        // the id of the last message received in full
	retry  time.Duration // the server's "retry:" field, a floor for reconnect delays
	status int           // of the last connection attempt
}

// connect runs one connection: it yields events until the connection ends (err, or nil at
// the end of the body), the consumer stops (stopped), or ctx ends. connected reports whether
// the server accepted the stream.
func (s *stream) connect(ctx context.Context, yield func(StreamEvent, error) bool) (connected, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.status = 0
	req, err := s.c.newRequest(ctx, http.MethodGet, s.c.search+"/api/v1/events/stream?"+s.q.values(false).Encode(), nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.last != "" {
		req.Header.Set("Last-Event-ID", s.last)
	}
	res, err := s.c.hc.Do(req)
	if err != nil {
		return false, false, err
	}
	defer res.Body.Close()
	s.status = res.StatusCode
	if res.StatusCode != http.StatusOK {
		return false, false, s.c.errorFrom(res)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		// Not a stream (a wrong URL?): reconnecting would only get the same answer again.
		return false, false, fmt.Errorf("%w: Content-Type %q, not text/event-stream", errMalformed, ct)
	}
	// The server sends a heartbeat while idle: silence for much longer means a connection that
	// died without being closed. Cancelling ends the read below, and the caller reconnects.
	idle := time.AfterFunc(s.c.idle, cancel)
	defer idle.Stop()

	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var (
		id             string
		hasID, hasData bool
		data           []byte
	)
	for sc.Scan() {
		idle.Reset(s.c.idle)
		line := sc.Bytes()
		if len(line) == 0 { // the end of a message: only now does its id count
			if hasID {
				s.last = id
			}
			if hasData {
				var e Event
				if err := json.Unmarshal(data, &e); err != nil {
					return true, false, fmt.Errorf("event: %w", err)
				}
				if !yield(StreamEvent{Event: e, LastEventID: s.last}, nil) {
					return true, true, nil
				}
			}
			id, hasID, data, hasData = "", false, data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(field) {
		case "id":
			id, hasID = string(value), true
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data, hasData = append(data, value...), true
		case "retry":
			if ms, err := strconv.Atoi(string(value)); err == nil && ms >= 0 {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
		// Anything else is a comment (": heartbeat") or a field this API does not send.
	}
	return true, false, sc.Err()
}
