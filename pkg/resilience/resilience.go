// Package resilience is Spillway's one kit for waiting between attempts and for not repeating
// itself in the logs: a capped exponential backoff with jitter, a context-aware sleep, and a
// per-key log throttle. Every retry loop and every repeated-error log line uses these, so they
// behave, and read, alike.
package resilience

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff is a capped exponential backoff: the nominal delay of attempt n (from 0) is
// Base·2ⁿ, at most Max. With Jitter, the delay is "equal jitter": half the nominal delay plus a
// random part of up to the other half, so that many waiters spread out yet none comes back at
// once. Next and Reset make it a per-loop counter; Delay is the same policy by attempt number.
// A Backoff is not safe for concurrent use (Delay is).
type Backoff struct {
	Base, Max time.Duration
	Jitter    bool
	attempt   int
}

// Delay is the wait before retry attempt n (0: the first retry).
func (b *Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter && d > 1 {
		d = d/2 + rand.N(d/2+1)
	}
	return d
}

// Next returns the wait before the next attempt and counts it.
func (b *Backoff) Next() time.Duration {
	d := b.Delay(b.attempt)
	b.attempt++
	return d
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d, or less when ctx ends or stop (which may be nil) closes first; it reports
// whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

// Throttle lets a log line through at most once per Every for each key (usually the message, or
// what failed): a failure repeated every second is logged once a minute, a new one at once. It
// counts the lines it held back, for the next one to say so. It is safe for concurrent use; the
// zero value lets everything through (Every 0).
type Throttle struct {
	Every time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now  func() time.Time
	mu   sync.Mutex
	keys map[string]*throttled
}

type throttled struct {
	last       time.Time
	suppressed int
}

// Allow reports whether a line for key may be logged now, and if so records it.
func (t *Throttle) Allow(key string) bool {
	_, ok := t.take(key)
	return ok
}

// Do runs f when a line for key may be logged now, with the number of lines held back since the
// last one.
func (t *Throttle) Do(key string, f func(suppressed int)) {
	if n, ok := t.take(key); ok {
		f(n)
	}
}

func (t *Throttle) take(key string) (suppressed int, ok bool) {
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.keys[key]
	if e != nil && now.Sub(e.last) < t.Every {
		e.suppressed++
		return 0, false
	}
	if e == nil {
		if t.keys == nil || len(t.keys) > 1000 { // keys are messages: bound the memory of a flood of distinct ones
			t.keys = map[string]*throttled{}
		}
		e = &throttled{}
		t.keys[key] = e
	}
	suppressed, e.last, e.suppressed = e.suppressed, now, 0
	return suppressed, true
}
