package esstore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// bulkSender sends one bulk request. It is the batcher's only contact with Elasticsearch
// (esSender in production, a fake in tests) and must be safe for concurrent use.
type bulkSender interface {
	// sendBulk posts body — n create actions, each followed by its document, as NDJSON — with
	// refresh=wait_for when searchable, and returns one answer per item, in order. When it cannot
	// (no response, a status other than 200, a body that does not parse, a number of items other
	// than n) it returns an error instead, with the HTTP status (0: no response).
	sendBulk(ctx context.Context, body []byte, n int, searchable bool) (answers []itemAnswer, status int, err error)
}

// itemAnswer is Elasticsearch's answer for one item of a bulk request.
type itemAnswer struct {
	Status int `json:"status"`
	Error  struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
		Cause  struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"caused_by"`
	} `json:"error"`
}

// queuedItem is one event waiting for, or riding in, a bulk request.
type queuedItem struct {
	line    []byte // the create action and the document, each newline-terminated
	ctx     context.Context
	i       int // the event's index in its Write, passed back with the result
	results chan<- itemResult
	added   time.Time
}

type itemResult struct {
	i   int
	out event.Outcome
}

// batch is one bulk request in the making.
type batch struct {
	searchable bool
	items      []queuedItem
	bytes      int
	first      time.Time     // when its first item was added
	done       chan struct{} // closed once every item has its result
}

// batcher is group commit without a fixed window. Events are gathered into the next bulk
// request of their mode (durable or searchable) while the limiter allows no more requests in
// flight, and that request is sent as soon as one answers; when a slot is free, an event is sent
// at once (after linger, when set). A batch that reaches maxBytes is closed and the next one
// begun, so bulk requests stay under the cap however far behind the cluster falls. The longest
// wait is the oldest event's, which QueueDelay reports for the caller's admission control.
//
// Every item handed to add gets exactly one result on its channel, whatever happens to its
// bulk request — an answer, a failure, an item missing from the response, an abandoned send at
// Close — so a writer waiting for results is never left waiting for one that cannot come (the
// failure go-elasticsearch's BulkIndexer had, issue #1041). Channels must have room for every
// result: the batcher never blocks on them.
//
// All methods are safe for concurrent use.
type batcher struct {
	sender   bulkSender
	maxBytes int
	linger   time.Duration
	timeout  time.Duration // of one bulk request; 0: none besides the transport's
	onFlush  func(event.Flush)
	now      func() time.Time
	life     context.Context // cancelled when Close gives up: requests in flight end
	abort    context.CancelFunc

	mu       sync.Mutex
	lim      *limiter
	open     [2]*batch // gathering, by mode (0 durable, 1 searchable)
	ready    []*batch  // closed by size, by a flush or by Close, oldest first; waiting for a slot
	sending  map[*batch]struct{}
	inflight int
	queued   int // items added and not yet answered
	closed   bool
	timer    *time.Timer // fires when the oldest open batch's linger ends
	timerAt  time.Time
}

func newBatcher(sender bulkSender, lim *limiter, maxBytes int, linger, timeout time.Duration, onFlush func(event.Flush), now func() time.Time) *batcher {
	b := &batcher{sender: sender, lim: lim, maxBytes: max(maxBytes, 1), linger: max(linger, 0), timeout: timeout,
		onFlush: onFlush, now: now, sending: map[*batch]struct{}{}}
	b.life, b.abort = context.WithCancel(context.Background())
	return b
}

func modeOf(searchable bool) int {
	if searchable {
		return 1
	}
	return 0
}

// errClosed is add's error after Close.
var errClosed = fmt.Errorf("bulk writer closed")

// add queues items for the next bulk request of their mode, all or none: after Close it adds
// none and returns errClosed.
func (b *batcher) add(searchable bool, items []queuedItem) error {
	mode := modeOf(searchable)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	for _, it := range items {
		o := b.open[mode]
		if o != nil && o.bytes+len(it.line) > b.maxBytes {
			b.ready, o = append(b.ready, o), nil
		}
		if o == nil {
			o = &batch{searchable: searchable, first: it.added, done: make(chan struct{})}
			b.open[mode] = o
		}
		o.items = append(o.items, it)
		o.bytes += len(it.line)
		if o.bytes >= b.maxBytes {
			b.ready, b.open[mode] = append(b.ready, o), nil
		}
	}
	b.queued += len(items)
	b.dispatchLocked()
	return nil
}

// dispatchLocked sends batches while the limiter allows, oldest first, and arms the linger
// timer for what must wait.
func (b *batcher) dispatchLocked() {
	now := b.now()
	for b.inflight < b.lim.current() {
		next := b.takeLocked(now)
		if next == nil {
			break
		}
		b.inflight++
		b.sending[next] = struct{}{}
		go b.run(next, b.lim.sending(), b.inflight)
	}
	b.armLocked(now)
}

// takeLocked removes and returns the oldest batch that may be sent now: a closed one, or an open
// one whose linger has passed. Nil when there is none.
func (b *batcher) takeLocked(now time.Time) *batch {
	var best *batch
	from := -1 // index in ready, or -2 - mode for an open batch
	if len(b.ready) > 0 {
		best, from = b.ready[0], 0
	}
	for mode, o := range b.open {
		if o != nil && b.dueLocked(o, now) && (best == nil || o.first.Before(best.first)) {
			best, from = o, -2-mode
		}
	}
	switch {
	case best == nil:
	case from == 0:
		b.ready[0] = nil
		b.ready = b.ready[1:]
	default:
		b.open[-2-from] = nil
	}
	return best
}

func (b *batcher) dueLocked(o *batch, now time.Time) bool {
	return b.closed || b.linger == 0 || !now.Before(o.first.Add(b.linger))
}

// armLocked makes the timer fire when the next open batch's linger ends. Without linger there
// is nothing to wait for: batches go when a slot frees, and completions dispatch.
func (b *batcher) armLocked(now time.Time) {
	if b.linger == 0 || b.closed {
		return
	}
	var at time.Time
	for _, o := range b.open {
		if o != nil && !b.dueLocked(o, now) && (at.IsZero() || o.first.Before(at)) {
			at = o.first.Add(b.linger)
		}
	}
	if at.IsZero() || at.Equal(b.timerAt) {
		return
	}
	b.timerAt = at
	if b.timer == nil {
		b.timer = time.AfterFunc(at.Sub(now), b.kick)
	} else {
		b.timer.Reset(at.Sub(now))
	}
}

func (b *batcher) kick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timerAt = time.Time{}
	b.dispatchLocked()
}

// run sends one batch and answers each of its items.
func (b *batcher) run(bt *batch, seq uint64, inflight int) {
	// Items whose writer has given up are not sent: under overload they would only lengthen the
	// queue for events someone still waits for. (Sending them would be harmless: a retry of the
	// request sees them as duplicates.)
	live := make([]queuedItem, 0, len(bt.items))
	for _, it := range bt.items {
		if it.ctx.Err() != nil {
			it.results <- itemResult{it.i, event.Outcome{Result: event.Pending, Reason: "not sent: the request ended first"}}
			continue
		}
		live = append(live, it)
	}
	f := event.Flush{Searchable: bt.searchable, Events: len(live)}
	var answers []itemAnswer
	var err error
	if len(live) > 0 {
		var body bytes.Buffer
		body.Grow(bt.bytes)
		for _, it := range live {
			body.Write(it.line)
		}
		ctx, cancel := b.life, context.CancelFunc(func() {})
		if b.timeout > 0 {
			ctx, cancel = context.WithTimeout(b.life, b.timeout)
		}
		start := b.now()
		f.Waited = start.Sub(bt.first)
		answers, f.Status, err = b.sender.sendBulk(ctx, body.Bytes(), len(live), bt.searchable)
		cancel()
		f.Took, f.Bytes = b.now().Sub(start), int64(body.Len())
		if err != nil && f.Status == 0 {
			f.Err = err
		}
		for _, a := range answers {
			if a.Status == 429 {
				f.Throttled++
			}
		}
	}

	b.mu.Lock()
	b.inflight--
	delete(b.sending, bt)
	b.queued -= len(bt.items)
	if len(live) > 0 {
		f.Limit = b.lim.observe(seq, f.Took, inflight, f.Failed() || f.Status == 429 || f.Throttled > 0)
	}
	b.dispatchLocked() // the next batch goes before this one's writers are woken
	b.mu.Unlock()
	// Before the writers are answered, too: a caller's breaker must have seen this request's
	// success by the time its 201s go out.
	if len(live) > 0 && b.onFlush != nil {
		b.onFlush(f)
	}

	for n, it := range live {
		var o event.Outcome
		if err != nil {
			o = event.Outcome{Result: event.Pending, Status: f.Status, Reason: err.Error()}
		} else {
			o = classify(answers[n])
		}
		it.results <- itemResult{it.i, o}
	}
	close(bt.done)
}

// queueDelay is how long the oldest event waiting for a bulk request has waited beyond linger
// (0 when none waits).
func (b *batcher) queueDelay() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var oldest time.Time
	for _, bt := range b.ready {
		if oldest.IsZero() || bt.first.Before(oldest) {
			oldest = bt.first
		}
	}
	for _, o := range b.open {
		if o != nil && (oldest.IsZero() || o.first.Before(oldest)) {
			oldest = o.first
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(b.now().Sub(oldest)-b.linger, 0)
}

// queuedItems is the number of items added and not yet answered.
func (b *batcher) queuedItems() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// limit is the limiter's current number of requests allowed in flight.
func (b *batcher) limit() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lim.current()
}

// closeOpenLocked makes the open batches sendable now, whatever their linger, and returns
// what must be answered for everything queued or in flight to be.
func (b *batcher) closeOpenLocked() []chan struct{} {
	for mode, o := range b.open {
		if o != nil {
			b.ready, b.open[mode] = append(b.ready, o), nil
		}
	}
	b.dispatchLocked()
	waits := make([]chan struct{}, 0, len(b.ready)+len(b.sending))
	for _, bt := range b.ready {
		waits = append(waits, bt.done)
	}
	for bt := range b.sending {
		waits = append(waits, bt.done)
	}
	return waits
}

// flush sends what is queued now, without waiting for linger, and waits within ctx until it
// and the requests in flight are answered.
func (b *batcher) flush(ctx context.Context) error {
	b.mu.Lock()
	waits := b.closeOpenLocked()
	b.mu.Unlock()
	return waitAll(ctx, waits)
}

// close stops accepting items and sends everything queued, within ctx. When ctx ends first, the
// requests in flight are cancelled and the items not yet sent are answered Pending, so every
// writer still waiting gets its results.
func (b *batcher) close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	waits := b.closeOpenLocked()
	b.mu.Unlock()
	err := waitAll(ctx, waits)
	if err == nil {
		b.abort()
		return nil
	}
	// Take what was never sent before cancelling what is in flight: their answers would
	// otherwise dispatch it, to fail at once.
	b.mu.Lock()
	left := b.ready
	b.ready = nil
	for _, bt := range left {
		b.queued -= len(bt.items)
	}
	b.mu.Unlock()
	b.abort()
	for _, bt := range left {
		for _, it := range bt.items {
			it.results <- itemResult{it.i, event.Outcome{Result: event.Pending, Reason: "not sent: the bulk writer was closed first"}}
		}
		close(bt.done)
	}
	return fmt.Errorf("bulk writer not drained: %w", err)
}

func waitAll(ctx context.Context, waits []chan struct{}) error {
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
