package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Indexer batches events into requests to the ingest service, like go-elasticsearch's
// esutil.BulkIndexer: Add queues an event, requests leave when a batch reaches FlushEvents or
// FlushBytes or its oldest event has waited FlushInterval, and each event's callbacks learn
// what became of it.
//
// Every event added gets exactly one outcome: OnSuccess once it is stored (with AckAsync: once
// the ingest process holds it), or OnFailure with the reason it is not. An event the server
// names in a field error fails with an *Error holding its own Details. The server stores
// nothing of a request that holds an invalid event (400 invalid_request) or an event for a
// clientId the API key may not write (403 with details), so the Indexer sends the other events
// of such a request again, at once, without them. When Elasticsearch itself refuses some events
// (400 rejected) the others are stored, and succeed. A request over the server's size limits
// (413) is split in two and each half sent. Everything else is retried, or fails the whole
// batch, as the RetryPolicy says.
//
// An Indexer is safe for concurrent use. Callbacks run on the Indexer's goroutines, possibly
// several at once, in no particular order; they must be fast, and must not call Close or a
// blocking Add (the buffer they would wait for may be theirs to free).
type Indexer interface {
	// Add gives e its id (a UUIDv7) and timestamp (now) if it has none, and queues it. It
	// returns an error, and queues nothing, when e cannot be encoded, when the buffer is full
	// (it waits for room until ctx ends, or with FailWhenFull returns ErrBufferFull at once),
	// or after Close (ErrClosed). Callbacks with nil functions are allowed.
	Add(ctx context.Context, e Event, cb ...Callbacks) error
	// Close stops accepting events, sends what is queued and waits until every event has its
	// outcome. When ctx ends first, it abandons the retries in progress, fails the events not
	// yet stored with ctx's error, and returns that error once every callback has run. Close
	// may be called more than once; it must be called to release the Indexer's goroutines.
	Close(ctx context.Context) error
	// Stats returns the counters so far.
	Stats() IndexerStats
}

// Callbacks are told one event's outcome. Either may be nil.
type Callbacks struct {
	// OnSuccess receives the event, with its id and timestamp, once it is stored.
	OnSuccess func(Event)
	// OnFailure receives the event and why it was not stored: an *Error when the server
	// refused it, or the last error when the retries gave up.
	OnFailure func(Event, error)
}

// IndexerStats count an Indexer's events and requests.
type IndexerStats struct {
	Added  uint64 // events queued by Add
	Stored uint64 // events that succeeded
	// Duplicates counts, among Stored, the events the server found already stored: written
	// by an attempt whose answer was lost, or posted before with the same id. The API reports
	// a count per request, not which events, so callbacks cannot say.
	Duplicates uint64
	// DuplicatesOnRetry counts, among Duplicates, those counted by the answer to a retry (a
	// request counted in Retries): usually events that the batch's earlier attempt stored
	// although its answer was lost. The other duplicates were counted by a batch's first
	// attempt: events posted before with the same ids, or events the ingest service found
	// already stored when it resent its own request to Elasticsearch after losing that answer.
	DuplicatesOnRetry uint64
	Failed            uint64 // events that failed
	Requests          uint64 // HTTP requests sent, retries included
	Retries           uint64 // requests that resent a batch after a failed attempt
}

// IndexerConfig configures an Indexer. Zero values take the defaults.
type IndexerConfig struct {
	// A batch is sent when it holds FlushEvents events (default 1,000; the server accepts up
	// to ingest.max_events, 10,000) or FlushBytes of NDJSON (default 1 MiB; the server accepts
	// up to ingest.max_body_bytes, 10 MiB), or when its first event has waited FlushInterval
	// (default 1s).
	FlushEvents   int
	FlushBytes    int
	FlushInterval time.Duration
	// Workers is how many requests may be in flight at once (default 2).
	Workers int
	// MaxBufferedBytes bounds the encoded size of the events added and not yet given their
	// outcome — queued, in flight or being retried (default 8 MiB; at least FlushBytes). A
	// full buffer makes Add wait, or with FailWhenFull fail with ErrBufferFull.
	MaxBufferedBytes int
	FailWhenFull     bool
}

// Errors of Add.
var (
	ErrBufferFull = errors.New("client: indexer buffer full")
	ErrClosed     = errors.New("client: indexer closed")
)

// NewIndexer starts an Indexer that posts through c.
func (c *Client) NewIndexer(cfg IndexerConfig) (Indexer, error) {
	if cfg.FlushEvents <= 0 {
		cfg.FlushEvents = 1000
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = 1 << 20
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = max(8<<20, cfg.FlushBytes)
	}
	if cfg.MaxBufferedBytes < cfg.FlushBytes {
		return nil, fmt.Errorf("client: MaxBufferedBytes (%d) must be at least FlushBytes (%d)", cfg.MaxBufferedBytes, cfg.FlushBytes)
	}
	ix := &indexer{
		c: c, cfg: cfg, room: newBudget(cfg.MaxBufferedBytes),
		queue: make(chan *item), batches: make(chan []*item),
		closing: make(chan struct{}), done: make(chan struct{}),
	}
	ix.ctx, ix.cancel = context.WithCancelCause(context.Background())
	go ix.batch()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range ix.batches {
				ix.send(b)
			}
		}()
	}
	go func() { wg.Wait(); ix.cancel(nil); close(ix.done) }()
	return ix, nil
}

type item struct {
	ev   Event
	line []byte // NDJSON, newline included
	cbs  []Callbacks
}

type indexer struct {
	c       *Client
	cfg     IndexerConfig
	room    *budget
	queue   chan *item   // to the batcher, which always receives promptly
	batches chan []*item // to the senders

	mu      sync.RWMutex // Add holds it to read closed and send; Close to set it
	closed  bool
	closing chan struct{} // closed by Close: wakes Adds waiting for room

	ctx    context.Context // ends when Close gives up: abandons retries
	cancel context.CancelCauseFunc
	done   chan struct{} // closed once every event has its outcome after Close

	added, stored, dups, dupsOnRetry, failed, requests, retries atomic.Uint64
}

func (ix *indexer) Add(ctx context.Context, e Event, cbs ...Callbacks) error {
	line, err := ix.c.encode(&e)
	if err != nil {
		return fmt.Errorf("client: add: %w", err)
	}
	if len(line) > ix.cfg.MaxBufferedBytes {
		return fmt.Errorf("client: add: event of %d bytes is larger than the whole buffer (MaxBufferedBytes %d)", len(line), ix.cfg.MaxBufferedBytes)
	}
	if err := ix.room.acquire(ctx, len(line), !ix.cfg.FailWhenFull, ix.closing); err != nil {
		return err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.closed {
		ix.room.release(len(line))
		return ErrClosed
	}
	ix.added.Add(1)
	ix.queue <- &item{ev: e, line: line, cbs: cbs}
	return nil
}

func (ix *indexer) Close(ctx context.Context) error {
	ix.mu.Lock()
	if !ix.closed {
		ix.closed = true
		close(ix.closing)
		close(ix.queue)
	}
	ix.mu.Unlock()
	select {
	case <-ix.done:
		return nil
	case <-ctx.Done():
		ix.cancel(context.Cause(ctx))
		<-ix.done // senders fail what they hold at once once ix.ctx has ended
		return ctx.Err()
	}
}

func (ix *indexer) Stats() IndexerStats {
	return IndexerStats{Added: ix.added.Load(), Stored: ix.stored.Load(), Duplicates: ix.dups.Load(),
		DuplicatesOnRetry: ix.dupsOnRetry.Load(), Failed: ix.failed.Load(), Requests: ix.requests.Load(),
		Retries: ix.retries.Load()}
}

// batch cuts the queue into batches and hands them to the senders. Cut batches wait in ready
// rather than block this loop, so that Add never waits for a sender: the byte budget, taken
// before an event is queued, is what bounds them.
func (ix *indexer) batch() {
	defer close(ix.batches)
	var (
		cur   []*item
		size  int
		ready [][]*item
		timer = time.NewTimer(time.Hour)
		due   <-chan time.Time // timer.C while cur is not empty
		queue = ix.queue
	)
	timer.Stop()
	cut := func() {
		if len(cur) > 0 {
			ready, cur, size, due = append(ready, cur), nil, 0, nil
			timer.Stop()
		}
	}
	for queue != nil || len(ready) > 0 {
		var out chan<- []*item
		var head []*item
		if len(ready) > 0 {
			out, head = ix.batches, ready[0]
		}
		select {
		case it, ok := <-queue:
			if !ok {
				queue = nil
				cut()
				continue
			}
			if len(cur) > 0 && size+len(it.line) > ix.cfg.FlushBytes {
				cut()
			}
			cur, size = append(cur, it), size+len(it.line)
			if len(cur) == 1 {
				timer.Reset(ix.cfg.FlushInterval)
				due = timer.C
			}
			if len(cur) >= ix.cfg.FlushEvents || size >= ix.cfg.FlushBytes {
				cut()
			}
		case out <- head:
			ready = ready[1:]
		case <-due:
			cut()
		}
	}
}

// send posts a batch until each of its events has an outcome.
func (ix *indexer) send(items []*item) {
	for len(items) > 0 {
		var body []byte
		for _, it := range items {
			body = append(body, it.line...)
		}
		res, attempts, err := ix.c.post(ix.ctx, body, len(items))
		ix.requests.Add(uint64(attempts))
		ix.retries.Add(uint64(max(attempts-1, 0)))
		if err == nil {
			ix.dups.Add(uint64(res.Duplicates))
			if attempts > 1 {
				ix.dupsOnRetry.Add(uint64(res.Duplicates))
			}
			ix.succeed(items)
			return
		}
		var e *Error
		if !errors.As(err, &e) || ix.ctx.Err() != nil {
			ix.fail(items, err)
			return
		}
		named, rest := split(items, e)
		switch {
		case e.Status == http.StatusRequestEntityTooLarge && len(items) > 1:
			half := len(items) / 2
			ix.send(items[:half])
			items = items[half:]
		case len(named) == 0:
			ix.fail(items, err)
			return
		case e.Code == "rejected":
			// Elasticsearch refused the named events and stored the others — unless the list
			// of details was cut short: then which others were refused is unknown, and sending
			// them again is how to learn it (those stored come back as duplicates).
			ix.failNamed(named, e)
			if len(e.Details) < event.MaxDetails {
				ix.succeed(rest)
				return
			}
			items = rest
		case e.Status == http.StatusBadRequest || e.Status == http.StatusForbidden:
			// Nothing of the request was stored: send the others without the named events.
			ix.failNamed(named, e)
			items = rest
		default:
			ix.fail(items, err)
			return
		}
	}
}

// split separates the items e's details name (with their details) from the others.
func split(items []*item, e *Error) (named map[*item][]FieldError, rest []*item) {
	named = map[*item][]FieldError{}
	for _, d := range e.Details {
		if d.Index >= 0 && d.Index < len(items) {
			it := items[d.Index]
			d.Index = 0
			named[it] = append(named[it], d)
		}
	}
	for _, it := range items {
		if _, ok := named[it]; !ok {
			rest = append(rest, it)
		}
	}
	return named, rest
}

func (ix *indexer) failNamed(named map[*item][]FieldError, e *Error) {
	for it, details := range named {
		msgs := make([]string, len(details))
		for i, d := range details {
			msgs[i] = d.Message
			if d.Field != "" {
				msgs[i] = d.Field + ": " + d.Message
			}
		}
		ix.fail([]*item{it}, &Error{Status: e.Status, Code: e.Code, Message: strings.Join(msgs, "; "),
			Details: details, RequestID: e.RequestID})
	}
}

// succeed and fail free the items' room before calling back, so that a callback never waits
// for room it holds itself.
func (ix *indexer) succeed(items []*item) {
	ix.release(items)
	ix.stored.Add(uint64(len(items)))
	for _, it := range items {
		for _, cb := range it.cbs {
			if cb.OnSuccess != nil {
				cb.OnSuccess(it.ev)
			}
		}
	}
}

func (ix *indexer) fail(items []*item, err error) {
	ix.release(items)
	ix.failed.Add(uint64(len(items)))
	for _, it := range items {
		for _, cb := range it.cbs {
			if cb.OnFailure != nil {
				cb.OnFailure(it.ev, err)
			}
		}
	}
}

func (ix *indexer) release(items []*item) {
	n := 0
	for _, it := range items {
		n += len(it.line)
	}
	ix.room.release(n)
}

// budget is a count of bytes that Add takes and outcomes give back.
type budget struct {
	mu    sync.Mutex
	free  int
	freed chan struct{} // closed and replaced whenever bytes are given back
}

func newBudget(n int) *budget { return &budget{free: n, freed: make(chan struct{})} }

// acquire takes n bytes; when there is no room it waits (if wait) until there is, ctx ends or
// closing is closed, or fails with ErrBufferFull.
func (b *budget) acquire(ctx context.Context, n int, wait bool, closing <-chan struct{}) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		if !wait {
			return ErrBufferFull
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return fmt.Errorf("client: add: waiting for buffer room: %w", ctx.Err())
		case <-closing:
			return ErrClosed
		}
	}
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.free += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
