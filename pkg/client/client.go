// Package client is the Go client of Spillway's HTTP APIs: it writes events to the ingest
// service and reads them from the search service, doing by itself what "2xx means durable"
// asks of every client.
//
//   - Every event gets its id (a UUIDv7) and its timestamp before the first attempt, so a
//     retry can only ever find it already stored (a duplicate), never store it twice.
//   - 408, 429, 502, 503, 504 and transport errors are retried with capped, jittered
//     exponential backoff that never retries sooner than the server's Retry-After; any other
//     4xx is final.
//   - An Indexer batches events by count, bytes and time within a bounded buffer, and tells each
//     event's own callback what became of it, including the field errors the server named it in.
//   - Events follows nextCursor to the last page; Stream reconnects and resumes with
//     Last-Event-ID, so a reader misses nothing and sees nothing twice.
//
// The package needs only the standard library, github.com/google/uuid and Spillway's event
// model (package event, which needs nothing else).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Event is one event as the API accepts and returns it. IngestedAt is set by the server and
// ignored when writing.
type Event = event.Event

// FieldError names one rule an event or parameter broke: the field and the rule.
type FieldError = event.FieldError

// Default base URLs: the services' default ports on this machine.
const (
	DefaultIngestURL = "http://127.0.0.1:8080"
	DefaultSearchURL = "http://127.0.0.1:8081"
)

// Ack is when the ingest service answers a write.
type Ack int

const (
	// AckDurable (the default): once Elasticsearch has every event durably (201).
	AckDurable Ack = iota
	// AckSearchable (wait=searchable): once the events are also visible to search.
	AckSearchable
	// AckAsync (ack=async): once the events are held by the ingest process (202). They are
	// written before it exits, but a failure to write them is not reported to the client.
	AckAsync
)

// Options configure a Client. The zero value talks to the default ports on loopback without
// an API key.
type Options struct {
	// IngestURL and SearchURL are the base URLs of the two services (they are separate
	// processes). Defaults: DefaultIngestURL and DefaultSearchURL.
	IngestURL string
	SearchURL string
	// APIKey is sent as "Authorization: Bearer <key>" when set.
	APIKey string
	// HTTPClient sends the requests (default: a client over http.DefaultTransport). Its Timeout,
	// if any, also ends live streams; prefer Options.Timeout.
	HTTPClient *http.Client
	// Timeout bounds one attempt of a request, reading the answer included (default 30s). It
	// does not apply to streams.
	Timeout time.Duration
	// Gzip compresses request bodies (Content-Encoding: gzip).
	Gzip bool
	// Ack is when writes are answered (default AckDurable).
	Ack Ack
	// Retry is the retry policy of every request and of stream reconnects.
	Retry RetryPolicy
	// StreamIdleTimeout reconnects a stream that received nothing, not even the server's
	// heartbeat (every 15 s by default), for this long (default 60s).
	StreamIdleTimeout time.Duration
	// OnAttempt, when set, is called after every HTTP attempt: for metrics and logs. It runs on
	// the goroutine that made the attempt and must be fast and safe for concurrent use.
	OnAttempt func(Attempt)
}

// Attempt describes one HTTP request the client made.
type Attempt struct {
	Op       string        // "post", "page", "count", "get" or "stream"
	N        int           // 1 for a call's first attempt, 2 for its first retry, ...
	Events   int           // events in a post
	Status   int           // the answer's status; 0 when none arrived
	Err      error         // nil when the attempt succeeded
	Duration time.Duration // from sending to the answer read (for a stream: until it ended)
	Wait     time.Duration // the delay before the next attempt; 0 when none follows
}

// Client talks to Spillway's ingest and search services. It is safe for concurrent use.
type Client struct {
	ingest, search string
	hc             *http.Client
	key            string
	gzip           bool
	ack            Ack
	retry          RetryPolicy
	timeout        time.Duration
	idle           time.Duration
	onAttempt      func(Attempt)

	// Replaced by tests, so that no test waits for real time to pass.
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
	rand  func() float64
}

// New returns a client. It contacts nothing.
func New(opts Options) (*Client, error) {
	c := &Client{
		hc: opts.HTTPClient, key: opts.APIKey, gzip: opts.Gzip, ack: opts.Ack,
		retry: opts.Retry.withDefaults(), timeout: opts.Timeout, idle: opts.StreamIdleTimeout,
		onAttempt: opts.OnAttempt, now: time.Now, sleep: sleep, rand: rand.Float64,
	}
	var err error
	if c.ingest, err = baseURL("ingest", opts.IngestURL, DefaultIngestURL); err != nil {
		return nil, err
	}
	if c.search, err = baseURL("search", opts.SearchURL, DefaultSearchURL); err != nil {
		return nil, err
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.idle <= 0 {
		c.idle = time.Minute
	}
	if c.ack < AckDurable || c.ack > AckAsync {
		return nil, fmt.Errorf("client: unknown Ack %d", c.ack)
	}
	return c, nil
}

func baseURL(name, s, def string) (string, error) {
	if s == "" {
		s = def
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("client: %s URL %q: want http(s)://host[:port][/path]", name, s)
	}
	return strings.TrimRight(s, "/"), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrNotFound matches (errors.Is) the error of Get for an id that is not stored, or that
// belongs to a client the API key may not read.
var ErrNotFound = errors.New("not found")

// Error is an error answer of a Spillway service: its status and the API's error envelope.
type Error struct {
	Status  int
	Code    string // e.g. invalid_request, rejected, forbidden, overloaded, unavailable
	Message string
	// Details name each problem: the field, the rule, and for a write the event's position in
	// the request (Index). In an error the Indexer hands to one event's callback, Details are
	// that event's own, with Index 0.
	Details    []FieldError
	RetryAfter time.Duration // from the Retry-After header; 0 when absent
	RequestID  string        // X-Request-Id, as the service logged it
}

// Error returns the message, status and code: "no event with this id (404 not_found)".
func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// errorFrom reads an error answer. Answers that are not the JSON envelope (from a proxy, or
// Go's HTTP server before any handler) keep the start of their body as the message.
func (c *Client) errorFrom(res *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	e := &Error{Status: res.StatusCode, RequestID: res.Header.Get("X-Request-Id"),
		RetryAfter: retryAfter(res.Header.Get("Retry-After"), c.now())}
	var env struct {
		Error struct {
			Code    string       `json:"code"`
			Message string       `json:"message"`
			Details []FieldError `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
		e.Code, e.Message, e.Details = env.Error.Code, env.Error.Message, env.Error.Details
		return e
	}
	e.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(res.StatusCode), " ", "_"))
	e.Message = strings.TrimSpace(string(body))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	return e
}

// do makes one call: it sends the request build makes until an attempt succeeds, fails for
// good, or the retry policy gives up, and returns the number of attempts. A 2xx answer is
// handed to read within the attempt's timeout (a failure to read it counts as a failed
// attempt); any other status becomes an *Error.
func (c *Client) do(ctx context.Context, op string, events int, build func(context.Context) (*http.Request, error),
	read func(*http.Response) error) (int, error) {
	b := c.backoff()
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		start := c.now()
		status, err := c.attempt(actx, build, read)
		cancel()
		if err != nil && ctx.Err() != nil {
			return n, fmt.Errorf("%s: %w", op, context.Cause(ctx))
		}
		wait, again := time.Duration(0), false
		if err != nil {
			wait, again = b.next(err, 0)
		}
		if c.onAttempt != nil {
			c.onAttempt(Attempt{Op: op, N: n, Events: events, Status: status, Err: err, Duration: c.now().Sub(start), Wait: wait})
		}
		switch {
		case err == nil:
			return n, nil
		case !again && n > 1:
			return n, fmt.Errorf("%s: gave up after %d attempts: %w", op, n, err)
		case !again:
			return n, fmt.Errorf("%s: %w", op, err)
		}
		if err := c.sleep(ctx, wait); err != nil {
			return n, fmt.Errorf("%s: %w", op, err)
		}
	}
}

func (c *Client) attempt(ctx context.Context, build func(context.Context) (*http.Request, error), read func(*http.Response) error) (int, error) {
	req, err := build(ctx)
	if err != nil {
		return 0, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.StatusCode, c.errorFrom(res)
	}
	if err := read(res); err != nil {
		return res.StatusCode, fmt.Errorf("read the answer: %w", err)
	}
	return res.StatusCode, nil
}

// newRequest builds a request with the API key.
func (c *Client) newRequest(ctx context.Context, method, url string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	return req, nil
}
