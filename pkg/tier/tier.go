// Package tier answers the read API over the whole history: recent events from Elasticsearch
// (hot), older ones from PostgreSQL (cold), split at the cold boundary that retention records.
//
// Both tiers hold events in one total order — timestamp (microseconds in both), then id (byte
// order: keyword sort values in Elasticsearch, COLLATE "C" in PostgreSQL) — and they partition
// it by timestamp: every event below the boundary B is read from PostgreSQL, every event at or
// above it from Elasticsearch. A merge is therefore a concatenation: ascending pages read
// [from, min(to, B)) cold and then [max(from, B), to) hot, descending pages the reverse, and a
// page that reaches the end of one part is topped up from the other. The cursor stays a
// (timestamp, id) position, whichever tier it came from, and the split is recomputed with the
// current boundary on every page, so a pagination crosses the boundary in either direction and
// survives the boundary moving between two of its pages: every event exists in exactly one part
// at any moment, and retention moves the boundary only over events PostgreSQL holds.
//
// Responses never say where an event came from; per-tier counts and latencies go to metrics
// (spillway_search_tier_*) and logs.
package tier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/resilience"
)

// Reader is what both stores answer (event.Reader); the tier store composes two of them.
type Reader = event.Reader

// Hot is the Elasticsearch tier (the Elasticsearch store) with its retention log.
type Hot interface {
	Reader
	// DroppedThrough returns the end of the newest day retention deleted, from Elasticsearch's
	// retention log (ok false: none).
	DroppedThrough(ctx context.Context) (time.Time, bool, error)
}

// Cold is the PostgreSQL tier (the archive, opened read-only with search's own small pool) and
// the boundary's home.
type Cold interface {
	Reader
	// ColdBoundary returns the prefix's boundary; ok is false when none was ever recorded.
	ColdBoundary(ctx context.Context, prefix string) (b time.Time, ok bool, err error)
}

// Options configure a Store.
type Options struct {
	// Prefix is the Elasticsearch index prefix whose boundary applies.
	Prefix string
	// Refresh is how often Run re-reads the boundary (search.cold_boundary_refresh).
	Refresh time.Duration
	// MaxAge is how long a boundary read is trusted (config.Search.BoundaryMaxAge); retention
	// waits longer than this before deleting what the boundary passed.
	MaxAge time.Duration
	// HotHorizon is ingest.max_past_age + 24h: retention never drops data younger than that, so
	// Elasticsearch alone is complete for now − HotHorizon onwards even when the boundary cannot
	// be read.
	HotHorizon time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics not registered
	Now        func() time.Time      // nil: time.Now
}

// clockMargin keeps the fallback split (when the boundary is unknown) clear of clock differences
// between the archiver, which computes retention horizons, and this process.
const clockMargin = time.Hour

// Store is the read API's store over both tiers: search.Store. Run keeps its boundary fresh. It
// is safe for concurrent use.
type Store struct {
	hot     Hot
	cold    Cold
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time

	mu     sync.Mutex
	b      time.Time // the boundary last read; zero: none recorded
	readAt time.Time // when that read started; zero: never read
	// dropped is the end of the newest day retention deleted, as last read from the retention
	// log. A boundary below it means PostgreSQL came back from an earlier point in time and the
	// archiver has not repaired it yet (archive/restore.go): the days in between are in neither
	// tier as far as the boundary says, so queries reaching below dropped are refused.
	dropped time.Time

	warn *resilience.Throttle // one log line per key per minute
}

// New builds a Store. Until the first boundary read succeeds (Run or Refresh), queries that reach
// older than now − HotHorizon answer event.ErrUnavailable.
func New(hot Hot, cold Cold, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.MaxAge < opts.Refresh {
		opts.MaxAge = 4 * opts.Refresh
	}
	s := &Store{hot: hot, cold: cold, opts: opts, logger: opts.Logger, now: opts.Now,
		warn: &resilience.Throttle{Every: time.Minute, Now: opts.Now}}
	s.metrics = newMetrics(opts.Registerer, func() bool { _, stale := s.boundary(s.now()); return stale })
	return s
}

// Run re-reads the boundary every Refresh until ctx ends. Failures keep the last value, which
// stays in use for MaxAge after its read; they are logged at most once a minute.
func (s *Store) Run(ctx context.Context) {
	for {
		rctx, cancel := context.WithTimeout(ctx, max(s.opts.Refresh, time.Second))
		_ = s.Refresh(rctx)
		cancel()
		t := time.NewTimer(s.opts.Refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Refresh reads the boundary now.
func (s *Store) Refresh(ctx context.Context) error {
	start := s.now()
	b, ok, err := s.cold.ColdBoundary(ctx, s.opts.Prefix)
	if err != nil {
		s.metrics.boundaryReads.WithLabelValues("error").Inc()
		if s.warn.Allow("boundary") {
			s.logger.Warn("cannot read the cold boundary; ranges it may cover answer 503 once the last value is too old",
				"err", err, "max_age", s.opts.MaxAge.String())
		}
		return fmt.Errorf("cold boundary: %w", err)
	}
	s.metrics.boundaryReads.WithLabelValues("ok").Inc()
	if !ok {
		b = time.Time{}
	}
	dropped, dok, derr := s.hot.DroppedThrough(ctx)
	if derr != nil && s.warn.Allow("retention log") {
		s.logger.Warn("cannot read the retention log; keeping the last value", "err", derr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if derr == nil && dok && dropped.After(s.dropped) {
		s.dropped = dropped
	}
	if s.dropped.After(b) && s.warn.Allow("restore") {
		s.logger.Error("PostgreSQL's cold boundary is behind the days retention deleted (restored from an earlier point in time?); refusing queries below the last deleted day until the archiver repairs it",
			"boundary", b, "dropped_through", s.dropped)
	}
	if b.Before(s.b) {
		b = s.b // it only moves forward; an older answer is a read that raced a newer one
	}
	if !b.Equal(s.b) || s.readAt.IsZero() {
		s.logger.Info("cold boundary", "prefix", s.opts.Prefix, "boundary", b, "previous", s.b)
	}
	s.b = b
	if start.After(s.readAt) {
		s.readAt = start
	}
	s.metrics.boundary.Set(unixOrZero(b))
	return nil
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}

// split is where a query divides: events below at are cold, the rest hot. With known false the
// boundary could not be read recently: at is then the oldest instant Elasticsearch is known to
// be complete from, and anything older cannot be answered.
type split struct {
	at    time.Time // zero: everything is hot
	known bool
}

// boundary returns the boundary last read and whether that read is too old to trust.
func (s *Store) boundary(now time.Time) (b time.Time, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b, s.readAt.IsZero() || now.Sub(s.readAt) > s.opts.MaxAge
}

func (s *Store) split() split {
	now := s.now()
	b, stale := s.boundary(now)
	s.mu.Lock()
	dropped := s.dropped
	s.mu.Unlock()
	if !stale && !dropped.After(b) {
		return split{at: b, known: true}
	}
	fence := now.Add(-s.opts.HotHorizon).Add(clockMargin).UTC()
	if stale && b.After(fence) {
		fence = b
	}
	if dropped.After(b) {
		fence = dropped // behind the retention log: nothing below the last deleted day is known
	}
	return split{at: fence}
}

// parts divides f at the split: cold [From, min(To, at)), hot [max(From, at), To). An empty part
// is reported as not ok.
func (sp split) parts(f event.Filter) (cold event.Filter, coldOK bool, hot event.Filter, hotOK bool) {
	cold, hot = f, f
	if sp.at.IsZero() {
		return cold, false, hot, nonEmpty(hot)
	}
	if cold.To.IsZero() || cold.To.After(sp.at) {
		cold.To = sp.at
	}
	if hot.From.IsZero() || hot.From.Before(sp.at) {
		hot.From = sp.at
	}
	return cold, nonEmpty(cold), hot, nonEmpty(hot)
}

func nonEmpty(f event.Filter) bool { return f.From.IsZero() || f.To.IsZero() || f.From.Before(f.To) }

// Page returns up to q.Size events in (timestamp, id) order strictly after q.After, from
// whichever tiers the range and the cursor need.
func (s *Store) Page(ctx context.Context, q event.PageQuery) ([]event.Event, error) {
	sp := s.split()
	coldF, coldOK, hotF, hotOK := sp.parts(q.Filter)
	// Where the cursor is: a position at or above the split has passed every cold event in
	// ascending order, and every hot event in descending order.
	inHot := q.After == nil || !q.After.Timestamp.Before(sp.at)
	afterIf := func(side bool) *event.Position {
		if q.After != nil && side {
			return q.After
		}
		return nil
	}
	var hits []event.Event
	readCold := func() error {
		if !sp.known {
			return s.unavailable("page", errors.New("the cold boundary is unknown and the range reaches below what Elasticsearch alone is known to hold"))
		}
		got, err := s.coldPage(ctx, coldF, q.Desc, afterIf(!inHot), q.Size-len(hits))
		hits = append(hits, got...)
		return err
	}
	readHot := func() error {
		got, err := s.hotPage(ctx, event.PageQuery{Filter: hotF, Desc: q.Desc, After: afterIf(inHot), Size: q.Size - len(hits)})
		hits = append(hits, got...)
		return err
	}
	first, second := readCold, readHot
	firstOK, secondOK := coldOK && (q.After == nil || !inHot), hotOK
	if q.Desc {
		first, second = readHot, readCold
		firstOK, secondOK = hotOK && inHot, coldOK
	}
	if firstOK {
		if err := first(); err != nil {
			return nil, err
		}
	}
	if secondOK && len(hits) < q.Size {
		if err := second(); err != nil {
			return nil, err
		}
	}
	return hits, nil
}

func (s *Store) hotPage(ctx context.Context, q event.PageQuery) ([]event.Event, error) {
	start := time.Now()
	hits, err := s.hot.Page(ctx, q)
	s.metrics.observe("hot", "page", start, err)
	if err != nil {
		return nil, s.fail("hot", "page", err)
	}
	return hits, nil
}

func (s *Store) coldPage(ctx context.Context, f event.Filter, desc bool, after *event.Position, size int) ([]event.Event, error) {
	q := event.PageQuery{Filter: f, Desc: desc, After: after, Size: size}
	start := time.Now()
	evs, err := s.cold.Page(ctx, q)
	s.metrics.observe("cold", "page", start, err)
	if err != nil {
		return nil, s.fail("cold", "page", err)
	}
	for i, e := range evs {
		evs[i] = normalize(e)
	}
	return evs, nil
}

// normalize makes an archived event look as Elasticsearch returns it: compact JSON (jsonb's text
// form has spaces after separators). The value is the same; jsonb's key order and number
// spelling remain (see docs/archiver.md, Payloads).
func normalize(e event.Event) event.Event {
	if len(e.Payload) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, e.Payload); err == nil {
			e.Payload = b.Bytes()
		}
	}
	return e
}

// Count returns the exact number of matching events: the cold part's count plus the hot part's,
// read concurrently.
func (s *Store) Count(ctx context.Context, f event.Filter) (int64, error) {
	sp := s.split()
	coldF, coldOK, hotF, hotOK := sp.parts(f)
	if coldOK && !sp.known {
		return 0, s.unavailable("count", errors.New("the cold boundary is unknown and the range reaches below what Elasticsearch alone is known to hold"))
	}
	var coldN, hotN int64
	g, gctx := errgroup.WithContext(ctx)
	if coldOK {
		g.Go(func() error {
			start := time.Now()
			n, err := s.cold.Count(gctx, coldF)
			s.metrics.observe("cold", "count", start, err)
			if err != nil {
				return s.fail("cold", "count", err)
			}
			coldN = n
			return nil
		})
	}
	if hotOK {
		g.Go(func() error {
			start := time.Now()
			n, err := s.hot.Count(gctx, hotF)
			s.metrics.observe("hot", "count", start, err)
			if err != nil {
				return s.fail("hot", "count", err)
			}
			hotN = n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return coldN + hotN, nil
}

// Get returns the event with the id: from Elasticsearch, else from PostgreSQL — in that order, so
// Get returns the newest event with the id, or with a non-zero day the one of that UTC day
// (an event's identity is its id and the UTC day of its timestamp). Elasticsearch is asked
// first: every day it holds is at least as new as any day only PostgreSQL holds (retention drops
// the oldest indices first, after the boundary passed them), and a day held by both is the same
// events in both, so its newest answer is the newest overall. PostgreSQL is asked only when
// Elasticsearch has no such event and something was ever dropped. Both tiers pick the same
// event for the same question.
func (s *Store) Get(ctx context.Context, id string, day time.Time) (event.Event, error) {
	start := time.Now()
	e, err := s.hot.Get(ctx, id, day)
	s.metrics.observe("hot", "get", start, ignoreNotFound(err))
	if err == nil || !errors.Is(err, event.ErrNotFound) {
		if err != nil {
			return e, s.fail("hot", "get", err)
		}
		return e, nil
	}
	if sp := s.split(); sp.known && sp.at.IsZero() {
		return e, err // nothing was ever dropped: Elasticsearch's answer is the whole answer
	}
	start = time.Now()
	e, err = s.cold.Get(ctx, id, day)
	s.metrics.observe("cold", "get", start, ignoreNotFound(err))
	if err != nil {
		if errors.Is(err, event.ErrNotFound) {
			return e, err
		}
		return e, s.fail("cold", "get", err)
	}
	return normalize(e), nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, event.ErrNotFound) {
		return nil
	}
	return err
}

// fail turns a tier's unavailability into an answer that names no tier (logging the cause, at
// most once a minute per tier and operation); other errors pass unchanged.
func (s *Store) fail(tier, op string, err error) error {
	if !errors.Is(err, event.ErrUnavailable) {
		return err
	}
	if s.warn.Allow(tier + op) {
		s.logger.Warn("tier unavailable", "tier", tier, "op", op, "err", err)
	}
	return &unavailableError{cause: err}
}

func (s *Store) unavailable(op string, cause error) error {
	s.metrics.refused.WithLabelValues(op).Inc()
	if s.warn.Allow("refused" + op) {
		s.logger.Warn("refusing a query the cold tier must answer", "op", op, "err", cause)
	}
	return &unavailableError{cause: cause}
}

// unavailableError is a 503 whose message names no tier. It matches event.ErrUnavailable and
// its cause (so a deadline stays recognisable as one).
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string {
	return "events of this time range cannot be read right now; retry later"
}

func (e *unavailableError) Unwrap() []error { return []error{event.ErrUnavailable, e.cause} }
