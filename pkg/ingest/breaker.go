package ingest

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errBreakerOpen is the cause of requests refused or abandoned because Elasticsearch is
// unreachable.
var errBreakerOpen = errors.New("elasticsearch is unreachable")

// breakerThreshold is how many bulk requests in a row must fail at the transport level (or with
// a 5xx) before the breaker opens. One reset connection does not open it; a stopped node fails
// three requests within milliseconds.
const breakerThreshold = 3

// breaker fails requests fast while Elasticsearch is unreachable. Without it each request would
// hold its share of the in-flight budget until its acknowledgement deadline, and a client would
// wait seconds for a 503 it could have had at once.
//
// It is fed by every bulk request (observe) and consulted by every API request (allow). While
// open it lets one request through per probe interval; the first bulk request that succeeds
// closes it. Opening also cancels the requests already waiting (via the generation context), so
// they answer 503 now instead of at their deadline. Safe for concurrent use.
type breaker struct {
	interval time.Duration
	now      func() time.Time
	onChange func(open bool) // called with the lock held; must not call back

	mu        sync.Mutex
	open      bool
	failures  int
	nextProbe time.Time
	gen       context.Context // cancelled when the breaker opens (or a probe fails)
	cancelGen context.CancelFunc
}

func newBreaker(interval time.Duration, onChange func(bool)) *breaker {
	b := &breaker{interval: interval, now: time.Now, onChange: onChange}
	b.gen, b.cancelGen = context.WithCancel(context.Background())
	return b
}

// allow reports whether a request may go to Elasticsearch. When it may, the returned context is
// cancelled if the breaker opens while the request waits.
func (b *breaker) allow() (context.Context, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return b.gen, true
	}
	if now := b.now(); !now.Before(b.nextProbe) {
		b.nextProbe = now.Add(b.interval)
		return b.gen, true // a probe
	}
	return nil, false
}

// observe records the outcome of one bulk request.
func (b *breaker) observe(failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !failed {
		b.failures = 0
		if b.open {
			b.open = false
			if b.onChange != nil {
				b.onChange(false)
			}
		}
		return
	}
	b.failures++
	switch {
	case b.open:
		// A probe failed: let its request answer now, and wait a full interval for the next one.
		b.nextProbe = b.now().Add(b.interval)
		b.abortWaiting()
	case b.failures >= breakerThreshold:
		b.open = true
		b.nextProbe = b.now().Add(b.interval)
		b.abortWaiting()
		if b.onChange != nil {
			b.onChange(true)
		}
	}
}

func (b *breaker) abortWaiting() {
	b.cancelGen()
	b.gen, b.cancelGen = context.WithCancel(context.Background())
}

// isOpen reports the state, for tests and readiness.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}
