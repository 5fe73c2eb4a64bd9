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
// is safe for concurrent use; the zero value lets everything through (Every 0).
type Throttle struct {
	Every time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now  func() time.Time
	mu   sync.Mutex
	last map[string]time.Time
}

// Allow reports whether a line for key may be logged now, and if so records it.
func (t *Throttle) Allow(key string) bool {
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[key]; ok && now.Sub(last) < t.Every {
		return false
	}
	if t.last == nil {
		t.last = map[string]time.Time{}
	}
	if len(t.last) > 1000 { // keys are messages: bound the memory of a flood of distinct ones
		clear(t.last)
	}
	t.last[key] = now
	return true
}
