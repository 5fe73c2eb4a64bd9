package client

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// RetryPolicy is how the client retries a failed attempt: after a delay that doubles from
// InitialDelay up to MaxDelay, drawn at random from its upper half so that clients that failed
// together do not retry together, and never sooner than the server's Retry-After.
//
// Only failures that may pass are retried: 408, 429, 502, 503, 504, and transport errors
// (no answer, or an answer cut short). Writes are safe to retry because every event carries
// the id and timestamp it was given before the first attempt.
type RetryPolicy struct {
	// InitialDelay is the delay before the first retry (default 100ms).
	InitialDelay time.Duration
	// MaxDelay caps the backoff (default 10s); a longer Retry-After is still honoured.
	MaxDelay time.Duration
	// MaxElapsed gives up when the next attempt would start later than this after the first
	// (default 5m). Negative: never retry.
	MaxElapsed time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.InitialDelay <= 0 {
		p.InitialDelay = 100 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 10 * time.Second
	}
	p.MaxDelay = max(p.MaxDelay, p.InitialDelay)
	if p.MaxElapsed == 0 {
		p.MaxElapsed = 5 * time.Minute
	}
	return p
}

// backoff is the retry state of one call (or of one stream's reconnects).
type backoff struct {
	c     *Client
	start time.Time
	n     int // failures so far
}

func (c *Client) backoff() *backoff { return &backoff{c: c, start: c.now()} }

// reset starts over, after a stream connected.
func (b *backoff) reset() { b.start, b.n = b.c.now(), 0 }

// next returns the delay before retrying after err, and whether to retry at all. floor is a
// delay the server asked for besides Retry-After (a stream's "retry:" field).
func (b *backoff) next(err error, floor time.Duration) (time.Duration, bool) {
	p := b.c.retry
	if p.MaxElapsed < 0 || !retryable(err) {
		return 0, false
	}
	b.n++
	d := p.MaxDelay
	if b.n < 32 && p.InitialDelay<<(b.n-1) < p.MaxDelay {
		d = p.InitialDelay << (b.n - 1)
	}
	d = d/2 + time.Duration(b.c.rand()*float64(d/2))
	var e *Error
	if errors.As(err, &e) {
		floor = max(floor, e.RetryAfter)
	}
	if floor > d {
		// Honour the server, spread by up to a fifth so that the clients it refused together
		// do not all come back in the same instant.
		d = floor + time.Duration(b.c.rand()*float64(floor/5))
	}
	if b.c.now().Add(d).Sub(b.start) > p.MaxElapsed {
		return 0, false
	}
	return d, true
}

// retryable reports whether an attempt that failed with err may succeed when sent again
// unchanged.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	// A 2xx answer that is not the JSON we expect will not become so: this is not a Spillway
	// service; nor will a certificate that does not verify. An answer cut short, or none at
	// all, may arrive complete next time.
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ce *tls.CertificateVerificationError
	return !errors.As(err, &se) && !errors.As(err, &te) && !errors.Is(err, errMalformed) && !errors.As(err, &ce)
}

// errMalformed marks a 2xx answer that is valid JSON but not what the API answers.
var errMalformed = errors.New("malformed answer")

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
