package esstore

import "time"

// limiter decides how many bulk requests may be in flight at once, from the latency
// Elasticsearch shows, in the manner of TCP Vegas (and Netflix's concurrency-limits, which
// carries it over to requests): it compares each request's round trip with the shortest one seen
// lately, the round trip without queueing. Their ratio estimates how many of the requests in
// flight were only waiting inside the cluster:
//
//	queued = inflight × (1 − base/rtt)
//
// Fewer than vegasAlpha queued, with every slot in use: the cluster has room, the limit grows by
// one. More than vegasBeta: requests queue in its write pool, where they add latency and one
// fsync each without adding throughput, so the limit shrinks by one, down to minConcurrency. (About one request waiting
// at the cluster is useful: it is there when a write thread frees, instead of a round trip later.) A request that failed as a
// whole, or any item answered 429 (the write pool's queue is full), halves it.
//
// With a 5 ms network round trip and a cluster that answers in 2 ms, base is 7 ms and a few
// more requests in flight barely move rtt: the limit grows until the round trip is hidden. On a
// 2-core node without that latency, a third request in flight mostly waits for a write thread:
// rtt grows with it and the limit stays near the node's write threads.
//
// Only requests sent under the current limit may change it (one adjustment per round, as in
// Vegas): the answers of requests sent before the last change say nothing about the new one.
// Requests that found a free slot with room to spare (application-limited: fewer in flight
// than the limit) never raise it: the load, not the cluster, bounded them.
//
// The base is the shortest round trip of the last one or two windows of minRTTWindow, so that
// it follows a cluster that became slower for good (bigger indices, a busier node) instead of
// holding the limit at its minimum forever.
//
// A limiter is not safe for concurrent use: the batcher calls it with its lock held.
type limiter struct {
	min, max int
	limit    int
	now      func() time.Time

	// Round-trip floor over two windows: the current one and the one before it.
	winStart         time.Time
	minCur, minPrev  time.Duration
	sent, changedSeq uint64 // requests sent; the sequence number of the first sent under the current limit
}

// Limiter parameters, in requests queued inside the cluster (see limiter).
const (
	vegasAlpha   = 0.5
	vegasBeta    = 1.5
	minRTTWindow = 10 * time.Second
)

// minConcurrency is the floor of the limit (when the ceiling allows it): one request on the
// wire while the next gathers. Below it a busy writer would leave the cluster idle for a round
// trip after every request; and the round trips of a shared machine vary so much that the
// Vegas estimate alone would sit at one request there, with events waiting two requests' time.
const minConcurrency = 2

// newLimiter starts at start and stays within [min(minConcurrency, ceiling), ceiling].
func newLimiter(start, ceiling int, now func() time.Time) *limiter {
	ceiling = max(ceiling, 1)
	floor := min(minConcurrency, ceiling)
	return &limiter{min: floor, max: ceiling, limit: min(max(start, floor), ceiling), now: now}
}

// current is the number of requests that may be in flight now.
func (l *limiter) current() int { return l.limit }

// sending records that a request is being sent and returns its sequence number, to be passed
// back to observe.
func (l *limiter) sending() uint64 {
	l.sent++
	return l.sent
}

// observe takes the answer of request seq: its round trip, the number in flight when it was
// sent (itself included), and whether the cluster shed load (a failed request or items
// answered 429). It returns the new limit.
func (l *limiter) observe(seq uint64, rtt time.Duration, inflight int, dropped bool) int {
	if !dropped && rtt > 0 {
		l.recordRTT(rtt)
	}
	if seq < l.changedSeq {
		return l.limit // sent under the previous limit
	}
	if dropped {
		l.set(max(l.min, l.limit/2))
		return l.limit
	}
	base := l.base()
	if base <= 0 || rtt <= 0 {
		return l.limit
	}
	queued := float64(inflight) * (1 - float64(base)/float64(rtt))
	switch {
	case queued > vegasBeta && l.limit > l.min:
		l.set(l.limit - 1)
	case queued < vegasAlpha && inflight >= l.limit && l.limit < l.max:
		l.set(l.limit + 1)
	}
	return l.limit
}

func (l *limiter) set(limit int) {
	if limit == l.limit {
		return
	}
	l.limit = limit
	l.changedSeq = l.sent + 1
}

func (l *limiter) recordRTT(rtt time.Duration) {
	now := l.now()
	if l.winStart.IsZero() || now.Sub(l.winStart) >= minRTTWindow {
		l.winStart, l.minPrev, l.minCur = now, l.minCur, rtt
		return
	}
	if rtt < l.minCur {
		l.minCur = rtt
	}
}

// base is the round trip without queueing: the shortest of the current and the previous window.
func (l *limiter) base() time.Duration {
	if l.minPrev > 0 && l.minPrev < l.minCur {
		return l.minPrev
	}
	return l.minCur
}
