package search

// SetWindowStreams sets how many open streams make the poller read shared windows (1: always,
// a huge number: never) and returns a function that restores the previous value.
func SetWindowStreams(n int64) (restore func()) {
	old := windowStreams.Swap(n)
	return func() { windowStreams.Store(old) }
}
