// Package search is Spillway's read API: events of clients by time with stable cursor
// pagination, exact counts, single events by id, and a live Server-Sent Events stream — all
// answered from Elasticsearch, so events are readable long before they reach PostgreSQL.
package search

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

// Store answers the paginated, counting and by-id queries: the Elasticsearch store, or with the
// cold tier the tier store over both.
type Store = event.Reader

// Feed is the per-shard _seq_no feed the live stream follows (the Elasticsearch store).
// Implementations must be safe for concurrent use.
type Feed interface {
	// Shards lists the shards of the event indices with their global checkpoints.
	Shards(ctx context.Context) ([]event.Shard, error)
	// RefreshIndices makes every operation up to the checkpoints read before it searchable.
	RefreshIndices(ctx context.Context, indices ...string) error
	// IndexUUIDs lists every event index that exists, from the cluster metadata (unlike Shards,
	// it includes indices whose shards cannot answer).
	IndexUUIDs(ctx context.Context) (map[string]bool, error)
	// ReadShard returns matching documents with After < _seq_no ≤ UpTo in _seq_no order.
	ReadShard(ctx context.Context, q event.FeedQuery) ([]event.Sequenced, error)
}

// Service serves the read API. Create it with New, mount it with Mount and run its stream
// poller with Run; it is safe for concurrent use.
type Service struct {
	store   Store
	cfg     config.Search
	logger  *slog.Logger
	metrics *Metrics
	signer  *signer
	streams *streams
}

// New builds the service. With an empty cfg.CursorKey, cursors and stream tokens are signed
// with a random per-process key: they then work only on this process until it restarts, so
// several replicas behind one load balancer must share a configured key.
func New(store Store, feed Feed, cfg config.Search, logger *slog.Logger, reg prometheus.Registerer) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sg, random := newSigner(cfg.CursorKey.Value())
	if random {
		logger.Warn("search.cursor_key is empty: signing cursors with a random per-process key; cursors and stream tokens will not survive a restart or work on another replica")
	}
	m := NewMetrics(reg)
	s := &Service{store: store, cfg: cfg, logger: logger, metrics: m, signer: sg}
	s.streams = newStreams(feed, cfg, logger, m)
	return s
}

// Mount adds the API routes to r. count and stream are registered before {id}, which would
// otherwise match them.
func (s *Service) Mount(r *mux.Router) {
	r.HandleFunc("/api/v1/events", s.list).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/events/count", s.count).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/events/stream", s.stream).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/events/{id}", s.get).Methods(http.MethodGet)
}

// Run polls Elasticsearch for the live streams until ctx ends; the streams end with it, so a
// shutting-down server does not wait for them. Call it once.
func (s *Service) Run(ctx context.Context) { s.streams.run(ctx) }

// maxWindow is Elasticsearch's default index.max_result_window: the largest size of one search.
const maxWindow = 10000

// eventHead is an event as the API returns it, times in event.TimeFormat, without its payload
// (appendEvent appends that).
type eventHead struct {
	ID         string `json:"id"`
	ClientID   string `json:"clientId"`
	Type       string `json:"type,omitempty"`
	Timestamp  string `json:"timestamp"`
	IngestedAt string `json:"ingestedAt"`
}

// eventEncoder appends events as the API's JSON objects, on one line each: {"id", "clientId",
// "type", "timestamp", "ingestedAt", "payload"}, type and payload absent when empty, nothing
// HTML-escaped. The payload is appended as it is, not re-encoded: it comes from a stored
// document that was decoded as JSON (so it is valid), and ingest stored it compacted; encoding
// it again scanned every byte twice more, the largest share of search's CPU for pages of large
// events. A payload with a raw line break (written by another tool) is compacted, so that an
// event stays one line: a stream's data line. An encoder is not safe for concurrent use; reuse
// one for the events of a page or a stream.
type eventEncoder struct {
	head bytes.Buffer
	enc  *json.Encoder
}

func newEventEncoder() *eventEncoder {
	e := &eventEncoder{}
	e.enc = json.NewEncoder(&e.head)
	e.enc.SetEscapeHTML(false)
	return e
}

func (ee *eventEncoder) appendEvent(b []byte, e event.Event) ([]byte, error) {
	ee.head.Reset()
	if err := ee.enc.Encode(eventHead{ID: e.ID, ClientID: e.ClientID, Type: e.Type,
		Timestamp: event.Truncate(e.Timestamp).Format(event.TimeFormat), IngestedAt: event.Truncate(e.IngestedAt).Format(event.TimeFormat)}); err != nil {
		return b, err
	}
	b = append(b, bytes.TrimSuffix(ee.head.Bytes(), []byte("}\n"))...)
	if p := e.Payload; len(p) > 0 {
		if bytes.ContainsAny(p, "\r\n") {
			var c bytes.Buffer
			if err := json.Compact(&c, p); err != nil {
				return b, fmt.Errorf("payload of %s: %w", e.ID, err)
			}
			p = c.Bytes()
		}
		b = append(b, `,"payload":`...)
		b = append(b, p...)
	}
	return append(b, '}'), nil
}

// bodies recycles the buffers pages are built in: a page of 100 events of 5 KB is half a
// megabyte, and allocating (and zeroing) one per request cost search about what not
// re-encoding the payloads saved.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody bounds the buffers kept for reuse (a page of 1,000 events of 1 KB fits).
const maxPooledBody = 4 << 20

// writeEvents answers GET /api/v1/events: {"events": [...], "nextCursor": "..."} (no cursor on
// the last page), built by an eventEncoder, with the headers httpx.WriteJSON sets.
func writeEvents(w http.ResponseWriter, events []event.Event, cursor string) error {
	buf := bodies.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledBody {
			bodies.Put(buf)
		}
	}()
	size := 32 + len(cursor)
	for _, e := range events {
		size += 256 + len(e.Payload)
	}
	b := append(slices.Grow((*buf)[:0], size), `{"events":[`...)
	ee := newEventEncoder()
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = ee.appendEvent(b, e); err != nil {
			return err
		}
	}
	b = append(b, ']')
	if cursor != "" { // base64url: nothing to escape
		b = append(b, `,"nextCursor":"`...)
		b = append(b, cursor...)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	*buf = b
	writeJSONBody(w, http.StatusOK, b)
	return nil
}

// writeJSONBody writes an encoded JSON body with the headers httpx.WriteJSON sets.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// queryContext bounds a JSON handler's work: the server has no write timeout (streams run for
// hours), so each handler enforces search.query_timeout itself. When the timeout passes, the
// context's cause is errQueryTimeout.
func (s *Service) queryContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(r.Context(), s.cfg.QueryTimeout, errQueryTimeout)
}

// errQueryTimeout is the deadline outcome of a query that outlasted search.query_timeout, in
// words that name the setting rather than the store's.
var errQueryTimeout = &event.Error{Kind: event.ErrDeadline, Message: "query took longer than search.query_timeout; retry or narrow it"}

// queryError is err, returned by a store under ctx (from queryContext), as errQueryTimeout when
// the query's own deadline is what ended it. (A client that went away cancels ctx instead: its
// error stays event.ErrCanceled.)
func queryError(ctx context.Context, err error) error {
	if context.Cause(ctx) == errQueryTimeout && errors.Is(err, event.ErrDeadline) {
		return fmt.Errorf("%w: %w", errQueryTimeout, err)
	}
	return err
}

// fail answers err; the mapper, httpx.WriteError, picks its status.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, s.logger, err)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	q, err := s.parseList(r.URL.RawQuery)
	if err == nil {
		err = auth.CheckClients(auth.FromContext(r.Context()), q.filter.ClientIDs...)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.queryContext(r)
	defer cancel()
	// One more than asked tells whether another page exists without a second query — except at
	// Elasticsearch's 10,000-hit window (search.max_limit may be set to it), where a full page
	// gets a cursor and the page after it may be empty.
	size, probe := q.limit+1, true
	if size > maxWindow {
		size, probe = q.limit, false
	}
	start := time.Now()
	events, err := s.store.Page(ctx, event.PageQuery{Filter: q.filter, Desc: q.desc, After: q.after, Size: size})
	s.metrics.observe("page", start, err)
	if err != nil {
		s.fail(w, r, queryError(ctx, err))
		return
	}
	n := min(len(events), q.limit)
	var cursor string
	if len(events) > q.limit || !probe && len(events) == q.limit {
		cursor = s.signer.encodeCursor(q.binding(), events[n-1].Position())
	}
	events = events[:n]
	if err := writeEvents(w, events, cursor); err != nil {
		s.fail(w, r, err)
	}
}

func (s *Service) count(w http.ResponseWriter, r *http.Request) {
	f, err := s.parseCount(r.URL.RawQuery)
	if err == nil {
		err = auth.CheckClients(auth.FromContext(r.Context()), f.ClientIDs...)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := s.queryContext(r)
	defer cancel()
	start := time.Now()
	n, err := s.store.Count(ctx, f)
	s.metrics.observe("count", start, err)
	if err != nil {
		s.fail(w, r, queryError(ctx, err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int64{"count": n})
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	var day time.Time
	var bad problems
	noEventThatDay := false
	if r.URL.RawQuery != "" {
		var vals url.Values
		if vals, bad = parseValues(r.URL.RawQuery, pDay); vals != nil {
			day = parseDay(vals, pDay, &bad)
			// A day outside the stores' range (0001-01-01 is also Go's zero time, "any day")
			// holds no event: answered here, not asked.
			noEventThatDay = vals.Has(pDay) && len(bad) == 0 && !event.Storable(day) && !event.Storable(day.Add(24*time.Hour-time.Nanosecond))
		}
	}
	if len(id) > maxIDBytes {
		bad.add("id", "must be at most %d bytes", maxIDBytes)
	}
	if len(bad) > 0 {
		s.fail(w, r, bad.err())
		return
	}
	ctx, cancel := s.queryContext(r)
	defer cancel()
	start := time.Now()
	var e event.Event
	var err error
	if noEventThatDay {
		err = event.ErrNotFound
	} else {
		e, err = s.store.Get(ctx, id, day)
	}
	// Another client's event is "not found", exactly as a missing one: a 403 would confirm to
	// a restricted key that the id exists, and ids are often guessable (order numbers).
	if err == nil && !auth.FromContext(r.Context()).CanActFor(e.ClientID) {
		err = event.ErrNotFound
	}
	if errors.Is(err, event.ErrNotFound) {
		s.metrics.observe("get", start, nil)
		s.fail(w, r, &event.Error{Kind: event.ErrNotFound, Message: "no event with this id"})
		return
	}
	s.metrics.observe("get", start, err)
	if err != nil {
		s.fail(w, r, queryError(ctx, err))
		return
	}
	b, err := newEventEncoder().appendEvent(nil, e)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSONBody(w, http.StatusOK, append(b, '\n'))
}
