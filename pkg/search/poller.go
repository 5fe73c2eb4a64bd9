package search

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
)

// The poller (one per process, for all streams).
//
// Every search.stream_poll it reads the shards' checkpoints. When none moved and no shard came
// or went, it does nothing more: no refresh, no read, and no stream is woken, so an idle feed
// costs one statistics request per interval. When the feed moved, it refreshes the indices
// whose checkpoints moved and publishes a snapshot; a short interval therefore costs
// Elasticsearch refreshes only while events arrive, and delivery waits at most about one
// interval plus the poll itself. The index metadata (which indices exist, for forgetting
// positions in deleted ones) is read again only when the shards changed.
//
// With enough streams open, it also reads, once, everything each moved shard gained (the
// shard's window) and keeps the windows of the recent polls in a chain per shard. A stream whose
// position lies anywhere in a shard's chain takes its matches from memory, filtered exactly as
// Elasticsearch would, through an index of each window by clientId: one that fell a few polls
// behind (a slow reader, a burst of deliveries, a new stream's first read) catches up without a
// query of its own. Only a stream behind the whole chain, or every stream when a shard gained
// more than a window holds or its read failed, runs its own filtered reads.
//
// A snapshot that only extends chains wakes only the streams of the clients whose events it
// holds; the others sleep through it, their positions still inside the chains. Any other
// snapshot (the first, one with a moved shard that has no window, or a change of the shards)
// wakes every stream.

const (
	// chainMaxDocs and chainMaxBytes bound the windows a chain keeps (about 10 s at 1,000 events
	// of 1 KB per second): how far behind a stream may fall and still catch up from memory.
	chainMaxDocs  = 10000
	chainMaxBytes = 32 << 20
)

// windowStreams is how many open streams make a shared window cheaper than their own filtered
// reads: below it, a few small reads cost less than one unfiltered one. A variable for tests.
var windowStreams atomic.Int64

func init() { windowStreams.Store(4) }

// newTicker makes the poller's clock; tests replace it with one they drive.
var newTicker = func(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// testHookPolled, when set (by tests), is called after every poll with whether it published,
// and with false after a tick that found no stream open.
var testHookPolled func(published bool)

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

	mu      sync.Mutex
	snap    *snapshot
	changed chan struct{} // closed and replaced whenever snap is replaced
	all     chan struct{} // closed and replaced whenever a snapshot must wake every stream

	waitMu  sync.Mutex
	waiters map[string]map[*waiter]struct{} // by clientId
	signals atomic.Int64                    // targeted wake-ups sent (tests read it)

	failMu     sync.Mutex
	failed     int // stream reads failed since failLogged
	failLogged time.Time
}

// waiter is one stream's targeted wake-up: a signal is left in ch when a snapshot holds an
// event of one of its clients.
type waiter struct{ ch chan struct{} }

// snapshot is the state of the shards after one poll: every operation up to each shard's
// global checkpoint is searchable. Immutable once published.
type snapshot struct {
	shards []event.Shard
	alive  map[string]bool // UUIDs of every event index that exists (cluster metadata)
	// aliveAt is when the poll that read alive started: alive was read later. Polls that find
	// the same shards reuse it (an index created, deleted, closed or reopened changes them).
	aliveAt time.Time
	chains  map[shardKey]*chain
	// touched holds the clients with events in this snapshot's new windows; wakeAll says every
	// stream must look at it.
	touched map[string]bool
	wakeAll bool
}

// window holds every document of one shard with from < _seq_no ≤ upTo, read once for all
// streams, indexed by clientId.
type window struct {
	from, upTo int64
	docs       []event.Sequenced
	byClient   map[string][]int // positions in docs, in _seq_no order
	bytes      int
}

func newWindow(from, upTo int64, docs []event.Sequenced) *window {
	w := &window{from: from, upTo: upTo, docs: docs, byClient: map[string][]int{}}
	for i, d := range docs {
		w.byClient[d.Event.ClientID] = append(w.byClient[d.Event.ClientID], i)
		w.bytes += len(d.Event.Payload) + len(d.Event.ID) + len(d.Event.ClientID) + 128
	}
	return w
}

// matching appends to out the window's documents after position that the stream's query
// selects: the filter ReadShard sends to Elasticsearch (clientId and type terms, ingestedAt ≥
// from), applied in memory, in _seq_no order. clientId and type are keywords without normalizer
// (exact match), and ingestedAt strings are fixed-width UTC (event.TimeFormat), so string order
// is time order.
func (w *window) matching(out []event.Sequenced, after int64, f event.Filter, from time.Time) []event.Sequenced {
	var idx []int
	for _, c := range f.ClientIDs {
		idx = append(idx, w.byClient[c]...)
	}
	if len(f.ClientIDs) > 1 {
		slices.Sort(idx)
		idx = slices.Compact(idx) // a clientId given twice
	}
	for _, i := range idx {
		d := w.docs[i]
		if d.SeqNo > after && (len(f.Types) == 0 || slices.Contains(f.Types, d.Event.Type)) && !d.Event.IngestedAt.Before(from) {
			out = append(out, d)
		}
	}
	return out
}

// chain is the recent windows of one shard, contiguous: each starts where the previous ends,
// the last ends at the shard's checkpoint in its snapshot. Immutable once published.
type chain struct {
	windows []*window
	docs    int
	bytes   int
}

func (c *chain) from() int64 { return c.windows[0].from }
func (c *chain) upTo() int64 { return c.windows[len(c.windows)-1].upTo }

// extend returns the chain with w appended (c may be nil or end elsewhere: then w starts a new
// one), its oldest windows dropped beyond the bounds.
func (c *chain) extend(w *window) *chain {
	n := &chain{windows: []*window{w}, docs: len(w.docs), bytes: w.bytes}
	if c == nil || c.upTo() != w.from {
		return n
	}
	for i := len(c.windows) - 1; i >= 0; i-- {
		o := c.windows[i]
		if n.docs+len(o.docs) > chainMaxDocs || n.bytes+o.bytes > chainMaxBytes {
			break
		}
		n.windows, n.docs, n.bytes = append(n.windows, o), n.docs+len(o.docs), n.bytes+o.bytes
	}
	slices.Reverse(n.windows)
	return n
}

// matching returns the chain's documents after position that the stream selects; ok is false
// when position lies before the chain.
func (c *chain) matching(after int64, f event.Filter, since time.Time) (docs []event.Sequenced, ok bool) {
	if after < c.from() {
		return nil, false
	}
	from := event.Truncate(since) // the zero time is before every event
	for i := len(c.windows) - 1; i >= 0 && c.windows[i].upTo > after; i-- {
		if i == 0 || c.windows[i-1].upTo <= after {
			for _, w := range c.windows[i:] {
				docs = w.matching(docs, after, f, from)
			}
			break
		}
	}
	return docs, true
}

func newStreams(feed Feed, cfg config.Search, logger *slog.Logger, m *Metrics) *streams {
	return &streams{
		feed: feed, cfg: cfg, logger: logger, metrics: m,
		readSem: make(chan struct{}, maxConcurrentReads),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		all:     make(chan struct{}),
		waiters: map[string]map[*waiter]struct{}{},
	}
}

// latest returns the newest snapshot (nil before the first poll), a channel closed when a newer
// one is published, and one closed when a newer one must wake every stream.
func (p *streams) latest() (*snapshot, <-chan struct{}, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.changed, p.all
}

// publish replaces the snapshot and wakes the streams that must look at it.
func (p *streams) publish(s *snapshot) {
	p.mu.Lock()
	p.snap = s
	close(p.changed)
	p.changed = make(chan struct{})
	if s.wakeAll {
		close(p.all)
		p.all = make(chan struct{})
	}
	p.mu.Unlock()
	if s.wakeAll {
		return
	}
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	for c := range s.touched {
		for w := range p.waiters[c] {
			select {
			case w.ch <- struct{}{}:
				p.signals.Add(1)
			default: // a wake-up is already pending
			}
		}
	}
}

// subscribe registers a stream's targeted wake-up for its clients; the returned function
// removes it.
func (p *streams) subscribe(clients []string) (*waiter, func()) {
	w := &waiter{ch: make(chan struct{}, 1)}
	p.waitMu.Lock()
	for _, c := range clients {
		if p.waiters[c] == nil {
			p.waiters[c] = map[*waiter]struct{}{}
		}
		p.waiters[c][w] = struct{}{}
	}
	p.waitMu.Unlock()
	return w, func() {
		p.waitMu.Lock()
		defer p.waitMu.Unlock()
		for _, c := range clients {
			delete(p.waiters[c], w)
			if len(p.waiters[c]) == 0 {
				delete(p.waiters, c)
			}
		}
	}
}

// run is the poller: while any stream is open, it reads the shards' checkpoints every interval
// and, when they moved, refreshes those indices and publishes a snapshot.
func (p *streams) run(ctx context.Context) {
	defer close(p.done)
	tick, stop := newTicker(p.cfg.StreamPoll)
	defer stop()
	var prev *snapshot // the last snapshot published
	var lastPoll time.Time
	var failing bool
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-p.wake:
			// A new stream: poll now, unless a poll has just looked (a snapshot is never stale
			// for correctness, only for latency).
			if !lastPoll.IsZero() && time.Since(lastPoll) < p.cfg.StreamPoll {
				continue
			}
		}
		if p.subscribers.Load() == 0 {
			if prev != nil { // no stream left: let the chains go; the next poll starts afresh
				prev = nil
				p.mu.Lock()
				p.snap = nil
				p.mu.Unlock()
			}
			if testHookPolled != nil {
				testHookPolled(false)
			}
			continue
		}
		lastPoll = time.Now()
		next, err := p.poll(ctx, prev)
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
		if next != nil {
			prev = next
		}
		if testHookPolled != nil {
			testHookPolled(next != nil)
		}
	}
}

// moved reports whether shards differ from the snapshot prev was taken from: a checkpoint
// moved, or a shard came or went.
func moved(prev *snapshot, shards []event.Shard) bool {
	if prev == nil || len(prev.shards) != len(shards) {
		return true
	}
	for i, sh := range shards {
		if o := prev.shards[i]; o.IndexUUID != sh.IndexUUID || o.Shard != sh.Shard || o.GlobalCheckpoint != sh.GlobalCheckpoint {
			return true
		}
	}
	return false
}

// poll reads the checkpoints and, when the feed moved since prev, refreshes the moved indices,
// reads their windows and publishes the snapshot it returns (nil: nothing published).
func (p *streams) poll(ctx context.Context, prev *snapshot) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.QueryTimeout)
	defer cancel()
	start := time.Now()
	// Checkpoints first, refresh second: the refresh then makes every operation up to them visible.
	shards, err := p.feed.Shards(ctx)
	p.metrics.observe("shards", start, err)
	if err != nil {
		return nil, fmt.Errorf("shard checkpoints: %w", err)
	}
	if !moved(prev, shards) {
		return nil, nil
	}
	visible := map[shardKey]int64{} // what prev made visible: where streams that keep up stand
	if prev != nil {
		for _, sh := range prev.shards {
			visible[shardKey{sh.IndexUUID, sh.Shard}] = sh.GlobalCheckpoint
		}
	}
	var stale []string
	seen := map[string]bool{}
	for _, sh := range shards {
		v, ok := visible[shardKey{sh.IndexUUID, sh.Shard}]
		if sh.GlobalCheckpoint >= 0 && (!ok || sh.GlobalCheckpoint > v) && !seen[sh.Index] {
			seen[sh.Index] = true
			stale = append(stale, sh.Index)
		}
	}
	sameShards := prev != nil && len(prev.shards) == len(shards)
	for i := 0; sameShards && i < len(shards); i++ {
		sameShards = prev.shards[i].IndexUUID == shards[i].IndexUUID && prev.shards[i].Shard == shards[i].Shard
	}
	// The index metadata and the refresh do not depend on each other: one round trip, not two.
	// The metadata is read again only when the shards changed.
	next := &snapshot{shards: shards, chains: map[shardKey]*chain{}, touched: map[string]bool{}}
	var aliveErr error
	aliveDone := make(chan struct{})
	if sameShards {
		next.alive, next.aliveAt = prev.alive, prev.aliveAt
		close(aliveDone)
	} else {
		next.aliveAt = start
		go func() {
			defer close(aliveDone)
			start := time.Now()
			next.alive, aliveErr = p.feed.IndexUUIDs(ctx)
			p.metrics.observe("index_uuids", start, aliveErr)
		}()
	}
	if len(stale) > 0 {
		start := time.Now()
		err := p.feed.RefreshIndices(ctx, stale...)
		p.metrics.observe("refresh", start, err)
		if err != nil {
			<-aliveDone
			return nil, fmt.Errorf("refresh: %w", err)
		}
	}
	<-aliveDone
	if aliveErr != nil {
		return nil, fmt.Errorf("index uuids: %w", aliveErr)
	}
	next.wakeAll = !sameShards || p.subscribers.Load() < windowStreams.Load()
	if p.subscribers.Load() >= windowStreams.Load() {
		p.readWindows(ctx, prev, visible, next)
	}
	p.publish(next)
	return next, nil
}

// readWindows extends, for each shard that moved since prev by at most windowMax operations, the
// shard's chain with everything it gained; unmoved shards keep their chains. A shard absent from
// prev is new since then and read from its start (unless there is no prev: then every shard
// would be "new"). A shard that moved without a window (too large, or its read failed) makes the
// snapshot wake every stream, for their own reads.
func (p *streams) readWindows(ctx context.Context, prev *snapshot, visible map[shardKey]int64, next *snapshot) {
	for _, sh := range next.shards {
		k := shardKey{sh.IndexUUID, sh.Shard}
		var old *chain
		if prev != nil {
			old = prev.chains[k]
		}
		from, ok := visible[k]
		if !ok {
			if prev == nil {
				next.wakeAll = true
				continue
			}
			from = -1
		}
		if sh.GlobalCheckpoint <= from {
			if old != nil && old.upTo() == sh.GlobalCheckpoint {
				next.chains[k] = old
			}
			continue
		}
		if sh.GlobalCheckpoint-from > windowMax {
			next.wakeAll = true
			continue
		}
		start := time.Now()
		docs, err := p.feed.ReadShard(ctx, event.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: from, UpTo: sh.GlobalCheckpoint, Size: windowMax})
		p.metrics.observe("read_window", start, err)
		if err != nil {
			p.readFailed(sh, err)
			next.wakeAll = true
			continue
		}
		w := newWindow(from, sh.GlobalCheckpoint, docs)
		next.chains[k] = old.extend(w)
		for c := range w.byClient {
			next.touched[c] = true
		}
	}
}

// readFailed logs a failed stream read, at most once per readLogEvery for all streams of the
// process: with Elasticsearch refusing reads, every open stream fails at every poll.
func (p *streams) readFailed(sh event.Shard, err error) {
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
