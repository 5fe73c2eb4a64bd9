package search

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/event"
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
// One poller per process (poller.go) reads the checkpoints every search.stream_poll and, when
// they moved, refreshes the changed indices and publishes a snapshot, however many streams are
// open. With enough streams open, it also reads what each shard gained, unfiltered, once, and
// keeps the recent reads in a chain per shard; a stream whose position lies in a chain takes its
// matches from memory. Others run their own filtered reads of the shards that moved past what
// they have read.

const (
	// streamBatch bounds the documents one read of one shard returns, and so a stream's memory.
	streamBatch = 200
	// maxConcurrentReads bounds the shard reads all streams of a process run at once, so a burst
	// of new events does not send one query per open stream to Elasticsearch at the same moment.
	maxConcurrentReads = 8
	// readLogEvery rate-limits the log of failed stream reads.
	readLogEvery = 30 * time.Second
	// windowMax bounds a shared window (operations of one shard in one poll: 20,000 events/s at
	// the default 100 ms poll); a larger gain is left to the streams' own reads.
	windowMax = 2000
)

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
		s.fail(w, r, &event.Error{Kind: event.ErrUnavailable, Message: "server is shutting down; reconnect to another instance"})
		return
	default:
	}
	if n := p.open.Add(1); n > int64(s.cfg.MaxStreams) {
		p.open.Add(-1)
		s.fail(w, r, &event.Error{Kind: event.ErrUnavailable,
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
	sw := &sseWriter{w: w, rc: rc, timeout: max(2*s.cfg.StreamHeartbeat, 10*time.Second), events: newEventEncoder()}
	// An id-only message sets the reader's last event id without an event: a reader that
	// reconnects before any event arrives still resumes from its subscription time.
	sw.buf.WriteString("retry: 1000\n")
	sw.id(s.signer.encodeToken(b, st.tok))
	if err := sw.flush(); err != nil {
		return
	}
	s.follow(r.Context(), sw, st)
}

// follow delivers events until the client leaves, a write fails or the poller stops. A stream
// that has delivered everything its snapshot holds sleeps until a snapshot holds an event of one
// of its clients or must wake every stream (poller.go); one whose Elasticsearch read failed
// retries every poll interval, whether or not the feed moves.
func (s *Service) follow(ctx context.Context, sw *sseWriter, st *streamState) {
	p := s.streams
	w, unsubscribe := p.subscribe(st.filter.ClientIDs)
	defer unsubscribe()
	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	var last *snapshot
	caughtUp := true
	for {
		snap, changed, all := p.latest()
		if snap != nil && (snap != last || !caughtUp) {
			last = snap
			var err error
			if caughtUp, err = s.deliver(ctx, sw, st, snap); err != nil {
				return
			}
		}
		wake := all
		if snap == nil {
			wake = changed // the first snapshot wakes everyone anyway
		}
		var retry *time.Timer
		var retryC <-chan time.Time
		if !caughtUp {
			retry = time.NewTimer(s.cfg.StreamPoll)
			retryC = retry.C
		}
		var err error
		select {
		case <-w.ch:
		case <-wake:
		case <-retryC:
		case <-heartbeat.C:
			sw.buf.WriteString(": heartbeat\n\n")
			err = sw.flush()
		case <-ctx.Done():
			err = ctx.Err()
		case <-p.done:
			err = errShutdown
		}
		if retry != nil {
			retry.Stop()
		}
		if err != nil {
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
	filter  event.Filter
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
	docs     []event.Sequenced
	next     int  // docs[:next] are delivered
	complete bool // the read returned everything up to upTo
}

// errClient marks a failed write: the client is gone. errShutdown ends streams on shutdown.
var (
	errClient   = errors.New("stream client gone")
	errShutdown = errors.New("server shutting down")
)

// deliver reads every shard with new operations and writes the matches, repeating while a
// read was cut at streamBatch; caughtUp reports that everything up to the snapshot's
// checkpoints is delivered. An Elasticsearch failure leaves the positions where they are
// (caughtUp false); only a failed write (the client left) ends the stream with an error.
func (s *Service) deliver(ctx context.Context, sw *sseWriter, st *streamState, snap *snapshot) (caughtUp bool, err error) {
	// Forget positions in deleted indices (retention): a deleted index never returns under its
	// UUID. Deleted means absent from the metadata read after this connection began: the token
	// may come from another replica and name an index created after this replica's last poll,
	// and dropping that position would make the index be read again from the start.
	if snap.aliveAt.After(st.started) {
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
			return false, errShutdown
		default:
		}
		var reads []*shardRead
		for _, sh := range snap.shards {
			k := shardKey{sh.IndexUUID, sh.Shard}
			after := st.position(k)
			if after >= sh.GlobalCheckpoint {
				continue
			}
			// A chain holds every operation from its start to the checkpoint: complete.
			if c := snap.chains[k]; c != nil && c.upTo() == sh.GlobalCheckpoint {
				if docs, ok := c.matching(after, st.filter, st.tok.since); ok {
					reads = append(reads, &shardRead{key: k, upTo: sh.GlobalCheckpoint, docs: docs, complete: true})
					s.metrics.streamReads.WithLabelValues("window").Inc()
					continue
				}
			}
			s.metrics.streamReads.WithLabelValues("elasticsearch").Inc()
			docs, err := s.readShard(ctx, event.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: after, UpTo: sh.GlobalCheckpoint,
				Size: streamBatch, ClientIDs: st.filter.ClientIDs, Types: st.filter.Types, IngestedFrom: st.tok.since})
			if err != nil {
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				s.streams.readFailed(sh, err)
				return false, nil
			}
			reads = append(reads, &shardRead{key: k, upTo: sh.GlobalCheckpoint, docs: docs, complete: len(docs) < streamBatch})
		}
		if len(reads) == 0 {
			return true, nil
		}
		if err := s.merge(sw, st, reads); err != nil {
			return false, err
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
			return true, nil
		}
	}
}

func (s *Service) readShard(ctx context.Context, q event.FeedQuery) ([]event.Sequenced, error) {
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
			if head == nil || rd.docs[rd.next].Event.IngestedAt.Before(head.docs[head.next].Event.IngestedAt) {
				head = rd // ingestedAt strings are fixed-width UTC (event.TimeFormat): string order is time order
			}
		}
		if head == nil {
			break
		}
		d := head.docs[head.next]
		head.next++
		st.tok.pos[head.key] = d.SeqNo
		if err := sw.event(s.signer.encodeToken(st.bind, st.tok), d.Event); err != nil {
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
	events  *eventEncoder
}

func (sw *sseWriter) id(tok string) {
	sw.buf.WriteString("id: ")
	sw.buf.WriteString(tok)
	sw.buf.WriteString("\n\n")
}

func (sw *sseWriter) event(tok string, e event.Event) error {
	sw.buf.WriteString("id: ")
	sw.buf.WriteString(tok)
	sw.buf.WriteString("\ndata: ")
	b, err := sw.events.appendEvent(sw.buf.AvailableBuffer(), e) // one line: no line break inside
	if err != nil {
		return err
	}
	sw.buf.Write(b)
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
