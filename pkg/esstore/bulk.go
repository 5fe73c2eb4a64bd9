package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/resilience"
)

// BulkConfig configures a BulkWriter.
type BulkConfig struct {
	// MaxConcurrent bounds the bulk requests in flight at once (both modes together). Below it the
	// number adapts to the latency the cluster shows (see limiter); the bound is for a cluster
	// whose latency does not tell, e.g. many data nodes behind one coordinating node.
	MaxConcurrent int
	// FlushBytes caps a bulk request's body: a batch that reaches it is sent (when a slot is free)
	// and the next one begun.
	FlushBytes int
	// Linger makes a batch wait this long after its first event for more, even when a request
	// could be sent at once. 0, the default: no wait — events are sent as soon as a slot is free,
	// and gathered only while none is.
	Linger time.Duration
	// OnFlush, when set, is called after every bulk request with its outcome (for metrics and
	// the caller's circuit breaker). It runs on the goroutine that sent the request: it must be
	// fast and safe for concurrent use.
	OnFlush func(event.Flush)
	// Timeout is the bulk API's timeout: how long Elasticsearch lets an item wait for an
	// unassigned primary shard or an index creation (default 1m). Waiting longer than the
	// callers do only keeps a slot busy; ingest passes its acknowledgement timeout. A bulk
	// request is abandoned a few seconds after it.
	Timeout time.Duration
}

// BulkWriter writes events with group commit: concurrent writers share bulk requests (see
// batcher), as many in flight as the cluster's latency allows (see limiter). Each event is a
// create with its id as _id in its daily index, so a retried event is stored once.
//
// It is built over esapi's Bulk rather than esutil.BulkIndexer: the indexer flushes on a timer
// or a size, with a fixed number of workers each holding its own buffer, so an event arriving
// at an idle indexer waits for the timer, the number of requests in flight cannot follow the
// cluster, the age of what waits cannot be read for admission control, and a failed flush could
// drop an item without any callback (go-elasticsearch#1041).
//
// Write is safe for concurrent use. Close drains; Write after Close fails with
// event.ErrUnavailable.
type BulkWriter struct {
	b        *batcher
	indexFor func(time.Time) string
}

// Retry backoff for items Elasticsearch answered with 429 or 5xx, and for failed bulk requests.
const (
	retryBase = 50 * time.Millisecond
	retryMax  = time.Second
	// maxWait bounds a Write whose context has no deadline: no wait may be unbounded.
	maxWait = time.Minute
	// requestSlack is how much longer than BulkConfig.Timeout a bulk request may take before it
	// is abandoned and its events retried.
	requestSlack = 5 * time.Second
)

// bulkFilterPath trims the bulk response to what classify reads.
const bulkFilterPath = "items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason"

// NewBulkWriter starts a writer. Its client does not retry by itself: Write retries items with
// backoff inside its caller's deadline, where it knows whether waiting still makes sense.
func (s *Store) NewBulkWriter(c BulkConfig) (*BulkWriter, error) {
	cfg := s.cfg
	cfg.MaxRetries = 0
	own, err := New(cfg, s.logger)
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if c.Timeout > 0 {
		timeout = c.Timeout + requestSlack
	}
	lim := newLimiter(minConcurrency, c.MaxConcurrent, time.Now)
	sender := &esSender{es: own.es, timeout: c.Timeout}
	return &BulkWriter{
		b:        newBatcher(sender, lim, c.FlushBytes, c.Linger, timeout, c.OnFlush, time.Now),
		indexFor: s.IndexFor,
	}, nil
}

// esSender sends bulk requests with the Elasticsearch client.
type esSender struct {
	es      esapi.Transport
	timeout time.Duration
}

func (s *esSender) sendBulk(ctx context.Context, body []byte, n int, searchable bool) ([]itemAnswer, int, error) {
	req := esapi.BulkRequest{Body: bytes.NewReader(body), Timeout: s.timeout, FilterPath: []string{bulkFilterPath}}
	if searchable {
		req.Refresh = "wait_for"
	}
	res, err := req.Do(ctx, s.es)
	if err != nil {
		return nil, 0, fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
		return nil, res.StatusCode, fmt.Errorf("bulk request: status %d: %s", res.StatusCode, bytes.TrimSpace(msg))
	}
	var out struct {
		Items []struct {
			Create itemAnswer `json:"create"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, res.StatusCode, fmt.Errorf("bulk response: %w", err)
	}
	if len(out.Items) != n {
		return nil, res.StatusCode, fmt.Errorf("bulk response: %d items for %d sent", len(out.Items), n)
	}
	answers := make([]itemAnswer, n)
	for i, it := range out.Items {
		answers[i] = it.Create
	}
	return answers, res.StatusCode, nil
}

// Write stores events and returns one event.Outcome per event, in order. With searchable, it returns
// only once the events are visible to search (refresh=wait_for, not a forced refresh).
//
// Items answered 429 or 5xx, and items of bulk requests that failed as a whole, are sent again
// with capped exponential backoff until they succeed or ctx ends. When ctx ends first, the
// remaining events are Pending and the error matches event.ErrUnavailable; it also wraps
// context.Cause(ctx). Rejected events do not make Write fail: the caller reads the outcomes.
func (w *BulkWriter) Write(ctx context.Context, events []event.Event, searchable bool) ([]event.Outcome, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxWait)
		defer cancel()
	}
	lines := make([][]byte, len(events))
	for i, e := range events {
		b, err := bulkLine(w.indexFor(e.Timestamp), e)
		if err != nil {
			return nil, fmt.Errorf("encode event %d: %w", i, err)
		}
		lines[i] = b
	}
	out := make([]event.Outcome, len(events))
	pending := make([]int, len(events))
	for i := range pending {
		pending[i] = i
	}
	bo := resilience.Backoff{Base: retryBase, Max: retryMax, Jitter: true} // retries of many writers spread out
	for {
		results := make(chan itemResult, len(pending)) // never blocks the batcher: one result per item
		items := make([]queuedItem, len(pending))
		now := w.b.now()
		for n, i := range pending {
			items[n] = queuedItem{line: lines[i], ctx: ctx, i: i, results: results, added: now}
		}
		if err := w.b.add(searchable, items); err != nil {
			for _, i := range pending {
				out[i].Reason = err.Error()
			}
			return out, w.unacknowledged(ctx, out)
		}
		for _, i := range pending {
			out[i].Attempts++
		}
		for range pending {
			select {
			case r := <-results:
				r.out.Attempts = out[r.i].Attempts
				out[r.i] = r.out
			case <-ctx.Done():
				return out, w.unacknowledged(ctx, out)
			}
		}
		pending = pending[:0]
		for i := range out {
			if out[i].Result == event.Pending {
				pending = append(pending, i)
			}
		}
		if len(pending) == 0 {
			return out, nil
		}
		if !resilience.Sleep(ctx, bo.Next(), nil) {
			return out, w.unacknowledged(ctx, out)
		}
	}
}

// bulkLine is an event's create action and document, each newline-terminated.
func bulkLine(index string, e event.Event) ([]byte, error) {
	doc, err := encodeDoc(e)
	if err != nil {
		return nil, err
	}
	idx, _ := json.Marshal(index)
	id, _ := json.Marshal(e.ID)
	b := make([]byte, 0, len(`{"create":{"_index":,"_id":}}`)+len(idx)+len(id)+len(doc)+2)
	b = append(b, `{"create":{"_index":`...)
	b = append(b, idx...)
	b = append(b, `,"_id":`...)
	b = append(b, id...)
	b = append(b, "}}\n"...)
	b = append(b, doc...)
	return append(b, '\n'), nil
}

// classify turns an item's answer into an event.Outcome.
func classify(a itemAnswer) event.Outcome {
	if a.Error.Type == "" && a.Status >= 200 && a.Status < 300 {
		return event.Outcome{Result: event.Created, Status: a.Status}
	}
	reason := a.Error.Type + ": " + a.Error.Reason
	if a.Error.Cause.Type != "" {
		reason += " (caused by " + a.Error.Cause.Type + ": " + a.Error.Cause.Reason + ")"
	}
	if len(reason) > 500 {
		reason = reason[:500] + "…"
	}
	switch {
	case a.Status == http.StatusConflict:
		return event.Outcome{Result: event.Duplicate, Status: a.Status}
	case a.Status == http.StatusTooManyRequests || a.Status >= 500:
		return event.Outcome{Result: event.Pending, Status: a.Status, Reason: reason}
	case a.Error.Type == "cluster_block_exception":
		// A block is the cluster refusing writes (index.blocks.write or read_only: 403; a full
		// disk's read_only_allow_delete comes as 429), not the event being wrong: retry it, and
		// let the caller answer "unavailable". Rejecting it would tell the client to drop a valid
		// event.
		return event.Outcome{Result: event.Pending, Status: a.Status, Reason: reason}
	default:
		return event.Outcome{Result: event.Rejected, Status: a.Status, Reason: reason}
	}
}

// unacknowledged is Write's error when some events are still pending.
func (w *BulkWriter) unacknowledged(ctx context.Context, out []event.Outcome) error {
	n, last := 0, ""
	for _, o := range out {
		if o.Result == event.Pending {
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

// Flush sends what is queued now, without waiting for linger, and waits for those bulk
// requests (and those in flight) within ctx. Drains use it.
func (w *BulkWriter) Flush(ctx context.Context) error { return w.b.flush(ctx) }

// Close stops accepting writes and sends everything queued, waiting until ctx ends at most;
// then what is still unsent or unanswered is answered Pending to its writers.
func (w *BulkWriter) Close(ctx context.Context) error { return w.b.close(ctx) }

// QueueDelay is how long the oldest event waiting for a bulk request has waited beyond the
// linger: 0 while the cluster keeps up, growing while it falls behind. Ingest's admission
// control reads it.
func (w *BulkWriter) QueueDelay() time.Duration { return w.b.queueDelay() }

// Limit is the number of bulk requests allowed in flight now.
func (w *BulkWriter) Limit() int { return w.b.limit() }

// EncodeDoc is an event's document exactly as ingest writes it with _bulk: the benchmark's
// raw baselines send the same bytes.
func EncodeDoc(e event.Event) ([]byte, error) { return encodeDoc(e) }

// encodeDoc is ToDoc as JSON, without HTML escaping, with the payload appended as it is: the
// decoder has validated and compacted it, and re-encoding a RawMessage would scan it twice more
// (it was the largest CPU cost of ingest). A payload with a raw line break, which would break
// the bulk body's NDJSON framing, is compacted first; one that is not JSON is refused by
// Elasticsearch for that event alone.
func encodeDoc(e event.Event) ([]byte, error) {
	d := toDoc(e)
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

// Queued returns how many events have been handed to bulk requests (sent or not) and not yet
// answered.
func (w *BulkWriter) Queued() int { return w.b.queuedItems() }
