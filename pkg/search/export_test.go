package search

import "time"

// SetWindowStreams sets how many open streams make the poller read shared windows (1: always,
// a huge number: never) and returns a function that restores the previous value.
func SetWindowStreams(n int64) (restore func()) {
	old := windowStreams.Swap(n)
	return func() { windowStreams.Store(old) }
}

// ManualTicker makes pollers started afterwards poll only when the test sends on the returned
// channel (besides a new stream's first poll). Call restore once those pollers have stopped.
func ManualTicker() (tick chan time.Time, restore func()) {
	old := newTicker
	tick = make(chan time.Time)
	newTicker = func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} }
	return tick, func() { newTicker = old }
}

// OnPoll calls f after every poll of pollers started afterwards, with whether the poll
// published a snapshot. Call restore once those pollers have stopped.
func OnPoll(f func(published bool)) (restore func()) {
	old := testHookPolled
	testHookPolled = f
	return func() { testHookPolled = old }
}

// Signals is how many targeted wake-ups the poller has sent to streams.
func (s *Service) Signals() int64 { return s.streams.signals.Load() }

// HasSnapshot reports whether the poller holds a snapshot (and so the chains of windows).
func (s *Service) HasSnapshot() bool {
	snap, _, _ := s.streams.latest()
	return snap != nil
}
