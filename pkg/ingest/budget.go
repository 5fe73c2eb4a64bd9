package ingest

import "sync"

// budget bounds what the process holds for requests in flight: body bytes (from the first byte
// read until the response) and events (from validation until acknowledgement, including async
// events not yet written). A request that does not fit is refused with 429 at once, never
// queued, so memory stays bounded however fast clients send. Safe for concurrent use.
type budget struct {
	maxBytes, maxEvents int64
	m                   *Metrics

	mu            sync.Mutex
	bytes, events int64
}

func newBudget(maxBytes, maxEvents int64, m *Metrics) *budget {
	return &budget{maxBytes: maxBytes, maxEvents: maxEvents, m: m}
}

// acquire takes bytes and events if both fit, and reports whether they did.
func (b *budget) acquire(bytes, events int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bytes+bytes > b.maxBytes || b.events+events > b.maxEvents {
		return false
	}
	b.bytes += bytes
	b.events += events
	b.m.inflightBytes.Set(float64(b.bytes))
	b.m.inflightEvs.Set(float64(b.events))
	return true
}

// release returns what acquire took.
func (b *budget) release(bytes, events int64) {
	if bytes == 0 && events == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bytes -= bytes
	b.events -= events
	b.m.inflightBytes.Set(float64(b.bytes))
	b.m.inflightEvs.Set(float64(b.events))
}

// used returns the bytes and events held.
func (b *budget) used() (bytes, events int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes, b.events
}
