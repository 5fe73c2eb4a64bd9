package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/spillway/spillway/pkg/event"
)

// BulkConfig configures a BulkWriter.
type BulkConfig struct {
	// Workers is the number of concurrent bulk requests of each of the two indexers (durable and
	// searchable).
	Workers int
	// FlushBytes sends a bulk request once its body reaches this size.
	FlushBytes int
	// FlushInterval sends a bulk request once its oldest event has waited this long: the
	// group-commit window. A few milliseconds let many concurrent single-event requests share one
	// bulk request at little cost in latency.
	FlushInterval time.Duration
	// OnFlush, when set, is called after every bulk request with its outcome (for metrics and
	// the caller's circuit breaker). It runs on an indexer worker: it must be fast and safe for
	// concurrent use.
	OnFlush func(Flush)
	// Timeout is the bulk API's timeout: how long Elasticsearch lets an item wait for an
	// unassigned primary shard or an index creation (default 1m). Waiting longer than the
	// callers do only keeps a worker busy; ingest passes its acknowledgement timeout.
	Timeout time.Duration
}

// Flush describes one bulk request as seen on the wire.
type Flush struct {
	Searchable bool          // sent with refresh=wait_for
	Bytes      int64         // request body size
	Took       time.Duration // until the response headers (or the transport error)
	Status     int           // HTTP status; 0 when no response arrived
	Err        error         // transport error (connection refused, reset, timeout)
}

// Failed reports whether the cluster was unreachable or answered with a server error, as opposed
// to answering (possibly with per-item failures).
func (f Flush) Failed() bool { return f.Err != nil || f.Status >= 500 }

// Result is what became of one event in a Write.
type Result int

// Results of one event.
const (
	// Pending: not acknowledged before the context ended. The event may or may not be stored;
	// writing it again with the same id is safe.
	Pending Result = iota
	// Created: stored by this write, durably (translog fsynced on every in-sync copy).
	Created
	// Duplicate: an event with this id already exists in the event's daily index. A retried
	// event is a success, not an error.
	Duplicate
	// Rejected: Elasticsearch refused the document (a 4xx other than 409 and 429, and not an
	// index block). Retrying will not help.
	Rejected
)

func (r Result) String() string {
	switch r {
	case Created:
		return "created"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	}
	return "pending"
}

// Outcome is the result of one event with Elasticsearch's reason for failures.
type Outcome struct {
	Result   Result
	Status   int    // the item's status in the bulk response; 0 if none arrived
	Reason   string // why it was rejected, or why the last attempt failed
	Attempts int    // times it was sent
}

// BulkWriter writes events through two esutil.BulkIndexers, one plain and one with
// refresh=wait_for, so that concurrent writers share bulk requests (group commit). Each event is
// a create with its id as _id in its daily index, so a retried event is stored once.
//
// Write is safe for concurrent use. Close drains both indexers; Write after Close fails with
// event.ErrUnavailable.
type BulkWriter struct {
	durable, searchable esutil.BulkIndexer
	indexFor            func(time.Time) string

	mu     sync.RWMutex // held for reading while adding items; Close takes it for writing
	closed bool
}

// Retry backoff for items Elasticsearch answered with 429 or 5xx, and for failed bulk requests.
const (
	retryBase = 50 * time.Millisecond
	retryMax  = time.Second
	// maxWait bounds a Write whose context has no deadline: a callback can go missing (the
	// indexer drops items whose bulk response does not parse, and go-elasticsearch#1041 lost
	// items on failed size-triggered flushes), so no wait may be unbounded.
	maxWait = time.Minute
)

// NewBulkWriter starts the indexers. Their client does not retry by itself: Write retries items
// with backoff inside its caller's deadline, where it knows whether waiting still makes sense.
func (s *Store) NewBulkWriter(c BulkConfig) (*BulkWriter, error) {
	cfg := s.cfg
	cfg.MaxRetries = 0
	own, err := New(cfg, s.logger)
	if err != nil {
		return nil, err
	}
	w := &BulkWriter{indexFor: s.IndexFor}
	for _, searchable := range []bool{false, true} {
		bc := esutil.BulkIndexerConfig{
			NumWorkers:    max(c.Workers, 1),
			FlushBytes:    c.FlushBytes,
			FlushInterval: c.FlushInterval,
			// Items wait in the queue while their worker is sending; a deep queue lets a busy worker
			// take a large batch next instead of blocking Add. Memory is bounded by the caller's
			// in-flight budget, not by this queue.
			QueueSizeMultiplier: 256,
			Timeout:             c.Timeout,
			Client:              &observed{next: own.es, searchable: searchable, on: c.OnFlush},
			FilterPath:          []string{"items.*.status", "items.*.error.type", "items.*.error.reason", "items.*.error.caused_by.type", "items.*.error.caused_by.reason"},
		}
		if searchable {
			bc.Refresh = "wait_for"
		}
		bi, err := esutil.NewBulkIndexer(bc)
		if err != nil {
			return nil, fmt.Errorf("bulk indexer: %w", err)
		}
		if searchable {
			w.searchable = bi
		} else {
			w.durable = bi
		}
	}
	return w, nil
}

// observed reports every bulk request to OnFlush.
type observed struct {
	next       esapi.Transport
	searchable bool
	on         func(Flush)
}

func (o *observed) Perform(req *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := o.next.Perform(req)
	if o.on != nil {
		f := Flush{Searchable: o.searchable, Bytes: req.ContentLength, Took: time.Since(start), Err: err}
		if res != nil {
			f.Status = res.StatusCode
		}
		o.on(f)
	}
	return res, err
}

type itemResult struct {
	i   int
	out Outcome
}

// Write stores events and returns one Outcome per event, in order. With searchable, it returns
// only once the events are visible to search (refresh=wait_for, not a forced refresh).
//
// Items answered 429 or 5xx, and items of bulk requests that failed as a whole, are sent again
// with capped exponential backoff until they succeed or ctx ends. When ctx ends first, the
// remaining events are Pending and the error matches event.ErrUnavailable; it also wraps
// context.Cause(ctx). Rejected events do not make Write fail: the caller reads the outcomes.
func (w *BulkWriter) Write(ctx context.Context, events []event.Event, searchable bool) ([]Outcome, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxWait)
		defer cancel()
	}
	docs := make([][]byte, len(events))
	for i, e := range events {
		b, err := encodeDoc(e)
		if err != nil {
			return nil, fmt.Errorf("encode event %d: %w", i, err)
		}
		docs[i] = b
	}
	bi := w.durable
	if searchable {
		bi = w.searchable
	}
	out := make([]Outcome, len(events))
	pending := make([]int, len(events))
	for i := range pending {
		pending[i] = i
	}
	backoff := retryBase
	for {
		results := make(chan itemResult, len(pending)) // never blocks a worker: one result per item
		added, err := w.add(ctx, bi, events, docs, pending, out, results)
		for got := 0; got < added; got++ {
			select {
			case r := <-results:
				r.out.Attempts = out[r.i].Attempts
				out[r.i] = r.out
			case <-ctx.Done():
				return out, w.unacknowledged(ctx, out)
			}
		}
		if err != nil {
			return out, w.unacknowledged(ctx, out)
		}
		pending = pending[:0]
		for i := range out {
			if out[i].Result == Pending {
				pending = append(pending, i)
			}
		}
		if len(pending) == 0 {
			return out, nil
		}
		// Full jitter keeps retries of many concurrent writers from arriving in lockstep.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return out, w.unacknowledged(ctx, out)
		}
		backoff = min(2*backoff, retryMax)
	}
}

// add hands the pending events to the indexer and returns how many it took.
func (w *BulkWriter) add(ctx context.Context, bi esutil.BulkIndexer, events []event.Event, docs [][]byte,
	pending []int, out []Outcome, results chan<- itemResult) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		for _, i := range pending {
			out[i].Reason = "bulk writer closed"
		}
		return 0, errors.New("bulk writer closed")
	}
	for n, i := range pending {
		out[i].Attempts++
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Index:      w.indexFor(events[i].Timestamp),
			Action:     "create",
			DocumentID: events[i].ID,
			Body:       bytes.NewReader(docs[i]),
			OnSuccess: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem) {
				results <- itemResult{i, Outcome{Result: Created, Status: res.Status}}
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				results <- itemResult{i, classify(res, err)}
			},
		})
		if err != nil {
			out[i].Attempts--
			for _, j := range pending[n:] {
				out[j].Reason = "not sent: " + err.Error()
			}
			return n, err
		}
	}
	return len(pending), nil
}

// classify turns a failed bulk item into an Outcome.
func classify(res esutil.BulkIndexerResponseItem, err error) Outcome {
	if err != nil {
		return Outcome{Result: Pending, Reason: err.Error()}
	}
	reason := res.Error.Type + ": " + res.Error.Reason
	if res.Error.Cause.Type != "" {
		reason += " (caused by " + res.Error.Cause.Type + ": " + res.Error.Cause.Reason + ")"
	}
	if len(reason) > 500 {
		reason = reason[:500] + "…"
	}
	switch {
	case res.Status == http.StatusConflict:
		return Outcome{Result: Duplicate, Status: res.Status}
	case res.Status == http.StatusTooManyRequests || res.Status >= 500:
		return Outcome{Result: Pending, Status: res.Status, Reason: reason}
	case res.Error.Type == "cluster_block_exception":
		// A block is the cluster refusing writes (index.blocks.write or read_only: 403; a full
		// disk's read_only_allow_delete comes as 429), not the event being wrong: retry it, and
		// let the caller answer "unavailable". Rejecting it would tell the client to drop a valid
		// event.
		return Outcome{Result: Pending, Status: res.Status, Reason: reason}
	default:
		return Outcome{Result: Rejected, Status: res.Status, Reason: reason}
	}
}

// unacknowledged is Write's error when some events are still pending.
func (w *BulkWriter) unacknowledged(ctx context.Context, out []Outcome) error {
	n, last := 0, ""
	for _, o := range out {
		if o.Result == Pending {
			n++
			if o.Reason != "" {
				last = o.Reason
			}
		}
	}
	msg := fmt.Sprintf("%d of %d events not acknowledged", n, len(out))
	if last != "" {
		msg += " (last error: " + last + ")"
	}
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("%s: %w: %w", msg, event.ErrUnavailable, cause)
	}
	return fmt.Errorf("%s: %w", msg, event.ErrUnavailable)
}

// Flush sends what the indexers hold now, without waiting for the flush interval, and waits
// for those bulk requests within ctx. Drains use it: events queued behind a long interval would
// otherwise wait for it.
func (w *BulkWriter) Flush(ctx context.Context) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return nil
	}
	errs := make(chan error, 2)
	for _, bi := range []esutil.BulkIndexer{w.durable, w.searchable} {
		go func() { errs <- bi.Flush(ctx) }()
	}
	return errors.Join(<-errs, <-errs)
}

// Close stops accepting writes and sends everything queued, waiting until ctx ends at most.
func (w *BulkWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	errs := make(chan error, 2)
	for _, bi := range []esutil.BulkIndexer{w.durable, w.searchable} {
		go func() { errs <- bi.Close(ctx) }()
	}
	return errors.Join(<-errs, <-errs)
}

// EncodeDoc is an event's document exactly as ingest writes it with _bulk: the benchmark's
// raw baselines send the same bytes.
func EncodeDoc(e event.Event) ([]byte, error) { return encodeDoc(e) }

// encodeDoc is ToDoc as JSON, without HTML escaping, with the payload appended as it is: the
// decoder has validated and compacted it, and re-encoding a RawMessage would scan it twice more
// (it was the largest CPU cost of ingest). A payload with a raw line break, which would break
// the bulk body's NDJSON framing, is compacted first; one that is not JSON is refused by
// Elasticsearch for that event alone.
func encodeDoc(e event.Event) ([]byte, error) {
	d := ToDoc(e)
	payload := d.Payload
	d.Payload = nil
	var buf bytes.Buffer
	buf.Grow(192 + len(payload))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("}\n"))
	if len(payload) > 0 {
		if bytes.ContainsAny(payload, "\r\n") {
			var c bytes.Buffer
			if err := json.Compact(&c, payload); err != nil {
				return nil, fmt.Errorf("payload: %w", err)
			}
			payload = c.Bytes()
		}
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	return append(b, '}'), nil
}

// Queued returns how many items the indexers hold that have not been answered yet (approximate:
// an item whose bulk response could not be read is never answered).
func (w *BulkWriter) Queued() int {
	n := 0
	for _, bi := range []esutil.BulkIndexer{w.durable, w.searchable} {
		st := bi.Stats()
		n += int(st.NumAdded) - int(st.NumFlushed) - int(st.NumFailed)
	}
	return n
}
