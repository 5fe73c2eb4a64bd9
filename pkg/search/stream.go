package search

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

// The live stream follows Elasticsearch, not any process's memory, so any replica can serve
// any reader and a reconnect can resume anywhere.
//
// Each shard numbers its operations with _seq_no; every operation at or below the shard's
// global checkpoint is on all in-sync copies, visible after a refresh that starts later, and no
// new operation can appear at or below it (esstore/feed.go). A stream therefore reads, per
// shard, the documents with position < _seq_no ≤ checkpoint that match its clientIds and types
// and were ingested at or after the subscription time, and delivers them in _seq_no order.
//
// Its resume token (the SSE id of every event) holds the subscription time and the position of
// each shard the stream has delivered from. A shard missing from the token is read from the
// start (with the ingestedAt ≥ subscription filter): none of its matches can have been
// delivered, or it would be in the token. So a reconnect with Last-Event-ID, to this or any
// replica, misses nothing and repeats nothing, and the token stays small: one entry per shard
// that actually held the reader's events.
//
// One poller per process reads the checkpoints and refreshes the changed indices once per
// search.stream_poll, however many streams are open. With enough streams open, it also reads
// what each shard gained since its previous poll, unfiltered, once (the shard's window); every
// stream whose position lies in a window takes its matches from it in memory, filtered exactly
// as Elasticsearch would. Streams behind a window (a resumed or a new one), and all streams when
// a window was too large or its read failed, run their own filtered reads of the shards that
// moved past what they have read.

const (
	// streamBatch bounds the documents one read of one shard returns, and so a stream's memory.
	streamBatch = 200
	// maxConcurrentReads bounds the shard reads all streams of a process run at once, so a burst
	// of new events does not send one query per open stream to Elasticsearch at the same moment.
	maxConcurrentReads = 8
	// readLogEvery rate-limits the log of failed stream reads.
	readLogEvery = 30 * time.Second
	// windowMax bounds a shared window (operations of one shard in one poll: 4,000 events/s at
	// the default 500 ms poll); a larger gain is left to the streams' own reads.
	windowMax = 2000
)

// windowStreams is how many open streams make a shared window cheaper than their own filtered
// reads: below it, a few small reads cost less than one unfiltered one. A variable for tests.
var windowStreams atomic.Int64

func init() { windowStreams.Store(4) }

// streams is the process's live-stream machinery: the shared poller and the open-stream cap.
type streams struct {
	feed    Feed
	cfg     config.Search
	logger  *slog.Logger
	metrics *Metrics
	readSem chan struct{}
	open    atomic.Int64

	subscribers atomic.Int64
	wake        chan struct{}
	done        chan struct{} // closed when the poller stops; streams end with it

	polled bool // the poller has published a snapshot: windows can start from index creation

	mu      sync.Mutex
	snap    *snapshot
	changed chan struct{} // closed and replaced whenever snap is replaced

	failMu     sync.Mutex
	failed     int // stream reads failed since failLogged
	failLogged time.Time
}

// snapshot is the state of the shards after one poll: every operation up to each shard's
// global checkpoint is searchable. Immutable once published.
type snapshot struct {
	at      time.Time // when the poll started: alive was read later
	shards  []esstore.Shard
	alive   map[string]bool // UUIDs of every event index that exists (cluster metadata)
	windows map[shardKey]*window
}

// window holds every document of one shard with from < _seq_no ≤ upTo (upTo is the shard's
// checkpoint in the snapshot), read once for all streams.
type window struct {
	from, upTo int64
	docs       []esstore.FeedDoc
}

// matching returns the window's documents after position that the stream's query selects:
// the filter ReadShard sends to Elasticsearch (clientId and type terms, ingestedAt ≥ since),
// applied in memory. clientId and type are keywords without normalizer (exact match), and
// ingestedAt strings are fixed-width UTC (event.TimeFormat), so string order is time order.
func (w *window) matching(after int64, f esstore.Filter, since time.Time) []esstore.FeedDoc {
	var from string // "" is before every time
	if !since.IsZero() {
		from = event.Truncate(since).Format(event.TimeFormat)
	}
	var out []esstore.FeedDoc
	for _, d := range w.docs {
		if d.SeqNo > after && (len(f.ClientIDs) == 0 || slices.Contains(f.ClientIDs, d.Doc.ClientID)) &&
			(len(f.Types) == 0 || slices.Contains(f.Types, d.Doc.Type)) && d.Doc.IngestedAt >= from {
			out = append(out, d)
		}
	}
	return out
}

func newStreams(feed Feed, cfg config.Search, logger *slog.Logger, m *Metrics) *streams {
	return &streams{
		feed: feed, cfg: cfg, logger: logger, metrics: m,
		readSem: make(chan struct{}, maxConcurrentReads),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
}

// latest returns the newest snapshot (nil before the first poll) and a channel closed when a
// newer one is published.
func (p *streams) latest() (*snapshot, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.changed
}

func (p *streams) publish(s *snapshot) {
	p.mu.Lock()
	p.snap = s
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// run is the poller: while any stream is open, it reads the shards' checkpoints and refreshes
// the indices whose checkpoints moved, once per interval for all streams together.
func (p *streams) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.cfg.StreamPoll)
	defer tick.Stop()
	refreshed := map[shardKey]int64{} // checkpoint made visible by the last successful refresh
	var failing bool
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.wake:
			// A new stream: poll now unless the current snapshot is fresh enough to start from.
			if s, _ := p.latest(); s != nil && time.Since(s.at) < p.cfg.StreamPoll {
				continue
			}
		}
		if p.subscribers.Load() == 0 {
			continue
		}
		err := p.poll(ctx, refreshed)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && (!failing || time.Since(lastLog) > time.Minute):
			p.logger.Warn("stream poll failed; streams wait and retry", "err", err)
			failing, lastLog = true, time.Now()
		case err == nil && failing:
			p.logger.Info("stream poll recovered")
			failing = false
		}
	}
}

func (p *streams) poll(ctx context.Context, refreshed map[shardKey]int64) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.QueryTimeout)
	defer cancel()
	start := time.Now()
	// Checkpoints first, refresh second: the refresh then makes every operation up to them visible.
	shards, err := p.feed.Shards(ctx)
	p.metrics.observe("shards", start, err)
	if err != nil {
		return fmt.Errorf("shard checkpoints: %w", err)
	}
	start2 := time.Now()
	alive, err := p.feed.IndexUUIDs(ctx)
	p.metrics.observe("index_uuids", start2, err)
	if err != nil {
		return fmt.Errorf("index uuids: %w", err)
	}
	var stale []string
	seen := map[string]bool{}
	for _, sh := range shards {
		r, ok := refreshed[shardKey{sh.IndexUUID, sh.Shard}]
		if sh.GlobalCheckpoint >= 0 && (!ok || sh.GlobalCheckpoint > r) {
			if !seen[sh.Index] {
				seen[sh.Index] = true
				stale = append(stale, sh.Index)
			}
		}
	}
	if len(stale) > 0 {
		start2 = time.Now()
		err := p.feed.RefreshIndices(ctx, stale...)
		p.metrics.observe("refresh", start2, err)
		if err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
	}
	for k := range refreshed {
		if !alive[k.uuid] {
			delete(refreshed, k)
		}
	}
	var windows map[shardKey]*window
	if p.subscribers.Load() >= windowStreams.Load() {
		windows = p.readWindows(ctx, shards, refreshed)
	}
	for _, sh := range shards {
		if sh.GlobalCheckpoint >= 0 {
			refreshed[shardKey{sh.IndexUUID, sh.Shard}] = sh.GlobalCheckpoint
		}
	}
	p.publish(&snapshot{at: start, shards: shards, alive: alive, windows: windows})
	p.polled = true
	return nil
}

// readWindows reads, for each shard that moved since the last poll by at most windowMax
// operations, everything it gained. prev holds the checkpoints of the previous snapshot, where
// streams that are keeping up stand; a shard absent from it is new since then and is read from
// its start (unless this is the first poll: then every shard would be "new"). A failed read
// leaves that shard to the streams' own reads.
func (p *streams) readWindows(ctx context.Context, shards []esstore.Shard, prev map[shardKey]int64) map[shardKey]*window {
	windows := map[shardKey]*window{}
	for _, sh := range shards {
		k := shardKey{sh.IndexUUID, sh.Shard}
		from, ok := prev[k]
		if !ok {
			if !p.polled {
				continue
			}
			from = -1
		}
		if sh.GlobalCheckpoint <= from || sh.GlobalCheckpoint-from > windowMax {
			continue
		}
		start := time.Now()
		docs, err := p.feed.ReadShard(ctx, esstore.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: from, UpTo: sh.GlobalCheckpoint, Size: windowMax})
		p.metrics.observe("read_window", start, err)
		if err != nil {
			p.readFailed(sh, err)
			continue
		}
		windows[k] = &window{from: from, upTo: sh.GlobalCheckpoint, docs: docs}
	}
	return windows
}

func (s *Service) stream(w http.ResponseWriter, r *http.Request) {
	f, err := s.parseStream(r.URL.RawQuery)
	if err == nil {
		err = auth.CheckClients(auth.FromContext(r.Context()), f.ClientIDs...)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b := binding{clientIDs: f.ClientIDs, types: f.Types}.bytes()
	var tok token
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		if tok, err = s.signer.decodeToken(b, last); err != nil {
			var bad problems
			bad.add("Last-Event-ID", "%v; reconnect without it to start from now", err)
			s.fail(w, r, bad.err())
			return
		}
	} else {
		tok = token{since: event.Truncate(time.Now()), pos: map[shardKey]int64{}}
	}
	p := s.streams
	select {
	case <-p.done:
		s.fail(w, r, &httpx.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "server is shutting down; reconnect to another instance"})
		return
	default:
	}
	if n := p.open.Add(1); n > int64(s.cfg.MaxStreams) {
		p.open.Add(-1)
		s.fail(w, r, &httpx.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Message: fmt.Sprintf("this instance serves at most %d streams; retry later or on another instance", s.cfg.MaxStreams)})
		return
	}
	defer p.open.Add(-1)
	s.metrics.openStreams.Inc()
	defer s.metrics.openStreams.Dec()
	p.subscribers.Add(1)
	defer p.subscribers.Add(-1)
	select {
	case p.wake <- struct{}{}:
	default:
	}

	// net/http clears the read deadline (http.read_timeout) once the request is read, so only
	// writes need a deadline: sseWriter sets one per flush.
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	st := &streamState{tok: tok, scanned: map[shardKey]int64{}, filter: f, bind: b, started: time.Now()}
	sw := &sseWriter{w: w, rc: rc, timeout: max(2*s.cfg.StreamHeartbeat, 10*time.Second)}
	// An id-only message sets the reader's last event id without an event: a reader that
	// reconnects before any event arrives still resumes from its subscription time.
	sw.buf.WriteString("retry: 1000\n")
	sw.id(s.signer.encodeToken(b, st.tok))
	if err := sw.flush(); err != nil {
		return
	}
	s.follow(r.Context(), sw, st)
}

// follow delivers events until the client leaves, a write fails or the poller stops.
func (s *Service) follow(ctx context.Context, sw *sseWriter, st *streamState) {
	p := s.streams
	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	var last *snapshot
	for {
		snap, changed := p.latest()
		if snap != nil && snap != last {
			last = snap
			if err := s.deliver(ctx, sw, st, snap); err != nil {
				return
			}
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			sw.buf.WriteString(": heartbeat\n\n")
			if err := sw.flush(); err != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-p.done:
			return
		}
	}
}

// streamState is one connection's progress. tok is what the reader can resume from; scanned
// remembers, for shards not in tok, how far this connection has read them without a match, so
// an unchanged shard is not read again (a new connection starts those from the beginning).
type streamState struct {
	tok     token
	scanned map[shardKey]int64
	filter  esstore.Filter
	bind    []byte    // the binding of the stream's parameters, computed once
	started time.Time // when this connection began
}

func (st *streamState) position(k shardKey) int64 {
	if p, ok := st.tok.pos[k]; ok {
		return p
	}
	if p, ok := st.scanned[k]; ok {
		return p
	}
	return -1
}

// shardRead is one read of one shard.
type shardRead struct {
	key      shardKey
	upTo     int64
	docs     []esstore.FeedDoc
	next     int  // docs[:next] are delivered
	complete bool // the read returned everything up to upTo
}

// errClient marks a failed write: the client is gone. errShutdown ends streams on shutdown.
var (
	errClient   = errors.New("stream client gone")
	errShutdown = errors.New("server shutting down")
)

// deliver reads every shard with new operations and writes the matches, repeating while a
// read was cut at streamBatch. An Elasticsearch failure leaves the positions where they are and
// waits for the next snapshot; only a failed write (the client left) ends the stream.
func (s *Service) deliver(ctx context.Context, sw *sseWriter, st *streamState, snap *snapshot) error {
	// Forget positions in deleted indices (retention): a deleted index never returns under its
	// UUID. Deleted means absent from the metadata read after this connection began: the token
	// may come from another replica and name an index created after this replica's last poll,
	// and dropping that position would make the index be read again from the start.
	if snap.at.After(st.started) {
		for k := range st.tok.pos {
			if !snap.alive[k.uuid] {
				delete(st.tok.pos, k)
			}
		}
	}
	for k := range st.scanned { // memory only: dropping an entry costs a read, never a duplicate
		if !snap.alive[k.uuid] {
			delete(st.scanned, k)
		}
	}
	for {
		select {
		case <-s.streams.done:
			return errShutdown
		default:
		}
		var reads []*shardRead
		for _, sh := range snap.shards {
			k := shardKey{sh.IndexUUID, sh.Shard}
			after := st.position(k)
			if after >= sh.GlobalCheckpoint {
				continue
			}
			// At most windowMax operations fit a window, so it holds all of them: complete.
			if w := snap.windows[k]; w != nil && after >= w.from && w.upTo == sh.GlobalCheckpoint {
				reads = append(reads, &shardRead{key: k, upTo: w.upTo, docs: w.matching(after, st.filter, st.tok.since), complete: true})
				s.metrics.streamReads.WithLabelValues("window").Inc()
				continue
			}
			s.metrics.streamReads.WithLabelValues("elasticsearch").Inc()
			docs, err := s.readShard(ctx, esstore.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: after, UpTo: sh.GlobalCheckpoint,
				Size: streamBatch, ClientIDs: st.filter.ClientIDs, Types: st.filter.Types, IngestedFrom: st.tok.since})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.streams.readFailed(sh, err)
				return nil
			}
			reads = append(reads, &shardRead{key: k, upTo: sh.GlobalCheckpoint, docs: docs, complete: len(docs) < streamBatch})
		}
		if len(reads) == 0 {
			return nil
		}
		if err := s.merge(sw, st, reads); err != nil {
			return err
		}
		more := false
		for _, rd := range reads {
			switch {
			case rd.complete && rd.next == len(rd.docs):
				// Everything up to the checkpoint is delivered: move there. Shards the stream has
				// not delivered from stay out of the token (memory only), keeping it small.
				if _, ok := st.tok.pos[rd.key]; ok {
					st.tok.pos[rd.key] = rd.upTo
				} else {
					st.scanned[rd.key] = rd.upTo
				}
			default:
				more = true // the position is the last delivered event's
			}
		}
		if !more {
			return nil
		}
	}
}

// readFailed logs a failed stream read, at most once per readLogEvery for all streams of the
// process: with Elasticsearch refusing reads, every open stream fails at every poll.
func (p *streams) readFailed(sh esstore.Shard, err error) {
	p.failMu.Lock()
	defer p.failMu.Unlock()
	p.failed++
	if time.Since(p.failLogged) < readLogEvery {
		return
	}
	p.logger.Warn("stream reads failed; streams retry at the next poll", "index", sh.Index, "shard", sh.Shard,
		"failures", p.failed, "err", err)
	p.failed, p.failLogged = 0, time.Now()
}

func (s *Service) readShard(ctx context.Context, q esstore.FeedQuery) ([]esstore.FeedDoc, error) {
	select {
	case s.streams.readSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.streams.readSem }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	start := time.Now()
	docs, err := s.streams.feed.ReadShard(ctx, q)
	s.metrics.observe("read_shard", start, err)
	return docs, err
}

// merge writes the documents of reads, each shard's in _seq_no order, interleaving shards by
// ingestedAt. It stops when a cut-short read runs out: what that shard holds next is unknown,
// and later documents of the other shards wait for the next round rather than jump ahead.
func (s *Service) merge(sw *sseWriter, st *streamState, reads []*shardRead) error {
	written := 0
loop:
	for {
		var head *shardRead
		for _, rd := range reads {
			if rd.next == len(rd.docs) {
				if !rd.complete {
					break loop
				}
				continue
			}
			if head == nil || rd.docs[rd.next].Doc.IngestedAt < head.docs[head.next].Doc.IngestedAt {
				head = rd // ingestedAt strings are fixed-width UTC (event.TimeFormat): string order is time order
			}
		}
		if head == nil {
			break
		}
		d := head.docs[head.next]
		head.next++
		st.tok.pos[head.key] = d.SeqNo
		if err := sw.event(s.signer.encodeToken(st.bind, st.tok), toJSON(d.Event())); err != nil {
			return err
		}
		written++
	}
	if written == 0 {
		return nil
	}
	s.metrics.streamEvents.Add(float64(written))
	return sw.flush()
}

// sseWriter buffers Server-Sent Events and flushes them with a write deadline, so a reader
// that stops reading is dropped instead of holding the stream forever.
type sseWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

func (sw *sseWriter) id(tok string) {
	sw.buf.WriteString("id: ")
	sw.buf.WriteString(tok)
	sw.buf.WriteString("\n\n")
}

func (sw *sseWriter) event(tok string, e eventJSON) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	sw.buf.WriteString("id: ")
	sw.buf.WriteString(tok)
	sw.buf.WriteString("\ndata: ")
	sw.buf.Write(b) // compact JSON: no newline inside, so one data line
	sw.buf.WriteString("\n\n")
	if sw.buf.Len() > 64<<10 {
		return sw.flush()
	}
	return nil
}

func (sw *sseWriter) flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	_, err := sw.w.Write(sw.buf.Bytes())
	sw.buf.Reset()
	if err == nil {
		err = sw.rc.Flush()
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errClient, err)
	}
	return nil
}
