package tier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// The fakes model the two stores' contracts (filters, total order, strict search_after); the
// integration tests check the real stores against the same expectations.

type fakeStores struct {
	mu       sync.Mutex
	hot      map[string]event.Event // Elasticsearch: what its indices hold
	cold     map[string]event.Event // PostgreSQL
	boundary time.Time
	dropped  time.Time // the retention log's last deleted day's end (zero: none)
	coldErr  error
	hotErr   error
	calls    map[string]int
}

func newFake() *fakeStores {
	return &fakeStores{hot: map[string]event.Event{}, cold: map[string]event.Event{}, calls: map[string]int{}}
}

func (f *fakeStores) call(name string) {
	f.mu.Lock()
	f.calls[name]++
	f.mu.Unlock()
}

func (f *fakeStores) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func match(e event.Event, clients, types []string, from, to time.Time) bool {
	return slices.Contains(clients, e.ClientID) && (len(types) == 0 || slices.Contains(types, e.Type)) &&
		(from.IsZero() || !e.Timestamp.Before(from)) && (to.IsZero() || e.Timestamp.Before(to))
}

func cmpKey(aTS time.Time, aID string, bTS time.Time, bID string) int {
	if c := aTS.Compare(bTS); c != 0 {
		return c
	}
	return strings.Compare(aID, bID)
}

func pageOf(set map[string]event.Event, clients, types []string, from, to time.Time, desc bool, afterTS *time.Time, afterID string, size int) []event.Event {
	var out []event.Event
	for _, e := range set {
		if !match(e, clients, types, from, to) {
			continue
		}
		if afterTS != nil {
			c := cmpKey(e.Timestamp, e.ID, *afterTS, afterID)
			if !desc && c <= 0 || desc && c >= 0 {
				continue
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b event.Event) int {
		c := cmpKey(a.Timestamp, a.ID, b.Timestamp, b.ID)
		if desc {
			return -c
		}
		return c
	})
	return out[:min(len(out), size)]
}

// fakeReader is one tier of fakeStores: the hot one (Elasticsearch) or the cold one.
type fakeReader struct {
	*fakeStores
	name string // "hot" or "cold", for the call log
}

// side returns the tier's events and its injected error; the caller holds mu.
func (r fakeReader) side() (map[string]event.Event, error) {
	if r.name == "hot" {
		return r.hot, r.hotErr
	}
	return r.cold, r.coldErr
}

func (r fakeReader) Page(_ context.Context, q event.PageQuery) ([]event.Event, error) {
	r.call(r.name + ".page")
	r.mu.Lock()
	defer r.mu.Unlock()
	set, err := r.side()
	if err != nil {
		return nil, err
	}
	var at *time.Time
	var id string
	if q.After != nil {
		at, id = &q.After.Timestamp, q.After.ID
	}
	return pageOf(set, q.ClientIDs, q.Types, q.From, q.To, q.Desc, at, id, q.Size), nil
}

func (r fakeReader) Count(_ context.Context, f event.Filter) (int64, error) {
	r.call(r.name + ".count")
	r.mu.Lock()
	defer r.mu.Unlock()
	set, err := r.side()
	if err != nil {
		return 0, err
	}
	return int64(len(pageOf(set, f.ClientIDs, f.Types, f.From, f.To, false, nil, "", 1<<30))), nil
}

func (r fakeReader) Get(_ context.Context, id string, day time.Time) (event.Event, error) {
	r.call(r.name + ".get")
	r.mu.Lock()
	defer r.mu.Unlock()
	set, err := r.side()
	if err != nil {
		return event.Event{}, err
	}
	if e, ok := set[id]; ok && onDay(e, day) {
		return e, nil
	}
	return event.Event{}, fmt.Errorf("event %q: %w", id, event.ErrNotFound)
}

type fakeHot struct{ fakeReader }

type fakeCold struct{ fakeReader }

func (h fakeHot) DroppedThrough(context.Context) (time.Time, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped, !h.dropped.IsZero(), nil
}

// onDay says whether e falls on day's UTC day (a zero day: any day).
func onDay(e event.Event, day time.Time) bool {
	return day.IsZero() || e.Timestamp.UTC().Truncate(24*time.Hour).Equal(day.UTC().Truncate(24*time.Hour))
}

func (c fakeCold) ColdBoundary(context.Context, string) (time.Time, bool, error) {
	c.call("cold.boundary")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.coldErr != nil {
		return time.Time{}, false, c.coldErr
	}
	return c.boundary, !c.boundary.IsZero(), nil
}

// retain moves the boundary to b and drops from "Elasticsearch" everything below it, the way
// retention does (the archive keeps everything).
func (f *fakeStores) retain(b time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boundary = b
	for id, e := range f.hot {
		if e.Timestamp.Before(b) {
			delete(f.hot, id)
		}
	}
}

var (
	t0       = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	boundary = t0.AddDate(0, 0, 10)
)

// world is 30 days of events of two clients, all archived, with ties on both sides of the
// boundary: at B−1µs (many), at B, and at B+1µs.
func world(t *testing.T) (*fakeStores, []event.Event) {
	f := newFake()
	r := rand.New(rand.NewPCG(3, 4))
	var all []event.Event
	add := func(id string, ts time.Time, client string) {
		e := event.Event{ID: id, ClientID: client, Type: []string{"a", "b"}[len(all)%2], Timestamp: ts, IngestedAt: ts, Payload: []byte(`{"k": 1}`)}
		all = append(all, e)
		f.hot[id], f.cold[id] = e, e
	}
	for i := 0; i < 600; i++ {
		add(fmt.Sprintf("e%04d", i), t0.Add(time.Duration(r.Int64N(int64(30*24*time.Hour)))).Truncate(time.Microsecond), fmt.Sprintf("c%d", i%2))
	}
	for i := 0; i < 25; i++ {
		add(fmt.Sprintf("below-%02d", i), boundary.Add(-time.Microsecond), "c0")
		add(fmt.Sprintf("at-%02d", i), boundary, "c0")
	}
	add("Above", boundary.Add(time.Microsecond), "c0")
	add("above", boundary.Add(time.Microsecond), "c1")
	f.retain(boundary)
	return f, all
}

// fixedClock never lets a boundary read go stale (a loaded machine could otherwise make a long
// test cross MaxAge); TestColdOutage moves its own clock.
func fixedClock() time.Time { return boundary.AddDate(0, 0, 40) }

func newStore(f *fakeStores, now func() time.Time) *Store {
	return New(fakeHot{fakeReader{f, "hot"}}, fakeCold{fakeReader{f, "cold"}}, Options{Prefix: "ev", Refresh: time.Second, MaxAge: 4 * time.Second,
		HotHorizon: 31 * 24 * time.Hour, Now: now})
}

func expected(all []event.Event, clients []string, from, to time.Time, desc bool) []string {
	set := map[string]event.Event{}
	for _, e := range all {
		set[e.ID] = e
	}
	var ids []string
	for _, e := range pageOf(set, clients, nil, from, to, desc, nil, "", 1<<30) {
		ids = append(ids, e.ID)
	}
	return ids
}

// paginate follows the cursor as the search handler does; between runs after each page.
func paginate(t *testing.T, s *Store, f event.Filter, desc bool, size int, between func(page int)) []string {
	t.Helper()
	var ids []string
	var after *event.Position
	for page := 0; page < 10000; page++ {
		hits, err := s.Page(context.Background(), event.PageQuery{Filter: f, Desc: desc, After: after, Size: size})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, h := range hits {
			ids = append(ids, h.ID)
		}
		if len(hits) < size {
			return ids
		}
		last := hits[len(hits)-1].Position()
		after = &last
		if between != nil {
			between(page)
		}
	}
	t.Fatal("pagination did not end")
	return nil
}

func TestPagesConcatenateTheTiersInBothOrders(t *testing.T) {
	f, all := world(t)
	s := newStore(f, fixedClock)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ranges := []struct{ from, to time.Time }{
		{},
		{from: boundary.Add(-time.Microsecond)}, // starts on the tie just below
		{to: boundary.Add(time.Microsecond)},    // ends just above
		{from: boundary, to: boundary.Add(24 * time.Hour)},                              // hot only
		{from: t0, to: boundary},                                                        // cold only
		{from: boundary.Add(-time.Microsecond), to: boundary.Add(2 * time.Microsecond)}, // the ties alone
	}
	for _, rg := range ranges {
		for _, clients := range [][]string{{"c0"}, {"c0", "c1"}} {
			for _, desc := range []bool{false, true} {
				for _, size := range []int{1, 7, 24, 1000} {
					want := expected(all, clients, rg.from, rg.to, desc)
					got := paginate(t, s, event.Filter{ClientIDs: clients, From: rg.from, To: rg.to}, desc, size, nil)
					if !slices.Equal(got, want) {
						t.Fatalf("range %v..%v clients %v desc %v size %d:\n got %d %v\nwant %d %v", rg.from, rg.to, clients, desc, size,
							len(got), got[:min(len(got), 30)], len(want), want[:min(len(want), 30)])
					}
				}
			}
		}
	}
	// A range above the boundary never touches PostgreSQL.
	before := f.count("cold.page")
	paginate(t, s, event.Filter{ClientIDs: []string{"c0"}, From: boundary}, false, 50, nil)
	paginate(t, s, event.Filter{ClientIDs: []string{"c0"}, From: boundary}, true, 50, nil)
	if f.count("cold.page") != before {
		t.Fatal("a hot-only range queried PostgreSQL")
	}
}

// The boundary moves between pages — ahead of the cursor, and past it — and every event still
// comes exactly once, in order.
func TestPaginationSurvivesTheBoundaryMoving(t *testing.T) {
	for _, desc := range []bool{false, true} {
		for _, move := range []int{3, 20, 60} { // after which page the boundary moves
			f, all := world(t)
			s := newStore(f, fixedClock)
			if err := s.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := expected(all, []string{"c0", "c1"}, time.Time{}, time.Time{}, desc)
			got := paginate(t, s, event.Filter{ClientIDs: []string{"c0", "c1"}}, desc, 9, func(page int) {
				if page == move {
					f.retain(boundary.AddDate(0, 0, 8))
					if err := s.Refresh(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			})
			if !slices.Equal(got, want) {
				t.Fatalf("desc %v move after page %d: got %d events, want %d", desc, move, len(got), len(want))
			}
		}
	}
}

func TestCountAddsTheTiers(t *testing.T) {
	f, all := world(t)
	s := newStore(f, fixedClock)
	_ = s.Refresh(context.Background())
	for _, rg := range []struct{ from, to time.Time }{{}, {from: boundary}, {to: boundary}, {from: boundary.Add(-time.Microsecond), to: boundary.Add(time.Microsecond)}} {
		n, err := s.Count(context.Background(), event.Filter{ClientIDs: []string{"c0", "c1"}, From: rg.from, To: rg.to})
		if want := len(expected(all, []string{"c0", "c1"}, rg.from, rg.to, false)); err != nil || n != int64(want) {
			t.Fatalf("%v..%v: count %d %v, want %d", rg.from, rg.to, n, err, want)
		}
	}
}

func TestGetFallsThroughToTheArchive(t *testing.T) {
	f, _ := world(t)
	s := newStore(f, fixedClock)
	_ = s.Refresh(context.Background())
	e, err := s.Get(context.Background(), "below-03", time.Time{})
	if err != nil || e.ID != "below-03" || string(e.Payload) != `{"k":1}` {
		t.Fatalf("cold event: %+v (%s) %v", e, e.Payload, err)
	}
	if _, err := s.Get(context.Background(), "nope", time.Time{}); !errors.Is(err, event.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	// Nothing ever dropped: Elasticsearch's "not found" is final; PostgreSQL is not asked.
	g := newFake()
	s = newStore(g, fixedClock)
	_ = s.Refresh(context.Background())
	if _, err := s.Get(context.Background(), "nope", time.Time{}); !errors.Is(err, event.ErrNotFound) || g.count("cold.get") != 0 {
		t.Fatalf("no boundary: %v, cold gets %d", err, g.count("cold.get"))
	}
}

// PostgreSQL down: what Elasticsearch alone answers keeps working; anything needing the archive
// is a 503 that names no tier — also once the last boundary read is too old to trust.
func TestColdOutage(t *testing.T) {
	f, all := world(t)
	var mu sync.Mutex
	now := boundary.AddDate(0, 0, 40) // the fence (now − 31d + 1h) is above the boundary
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newStore(f, clock)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.coldErr = fmt.Errorf("cold page: %w: connection refused", event.ErrUnavailable)
	f.mu.Unlock()
	fence := func() time.Time { return clock().Add(-31 * 24 * time.Hour).Add(time.Hour) }

	check503 := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, event.ErrUnavailable) {
			t.Fatalf("%s: %v, want unavailable", what, err)
		}
		if msg := err.Error(); strings.Contains(msg, "cold") || strings.Contains(msg, "Postgre") || strings.Contains(msg, "connection") {
			t.Fatalf("%s: the message %q tells the tiers apart", what, msg)
		}
	}
	for _, stale := range []bool{false, true} {
		if stale {
			mu.Lock()
			now = now.Add(10 * time.Second) // beyond MaxAge: the boundary read cannot be trusted
			mu.Unlock()
			if err := s.Refresh(context.Background()); err == nil {
				t.Fatal("refresh succeeded with PostgreSQL down")
			}
		}
		// Hot only: a range above the boundary (and above the fence when stale).
		from := boundary
		if stale {
			from = fence()
		}
		got := paginate(t, s, event.Filter{ClientIDs: []string{"c0", "c1"}, From: from}, false, 13, nil)
		if want := expected(all, []string{"c0", "c1"}, from, time.Time{}, false); !slices.Equal(got, want) {
			t.Fatalf("stale %v: hot range: %d events, want %d", stale, len(got), len(want))
		}
		// Newest first, the first page comes from Elasticsearch alone.
		if hits, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c0"}}, Desc: true, Size: 5}); err != nil || len(hits) != 5 {
			t.Fatalf("stale %v: newest page: %d %v", stale, len(hits), err)
		}
		_, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c0"}}, Size: 5})
		check503(fmt.Sprintf("stale %v: oldest page", stale), err)
		_, err = s.Count(context.Background(), event.Filter{ClientIDs: []string{"c0"}})
		check503(fmt.Sprintf("stale %v: count", stale), err)
		if n, err := s.Count(context.Background(), event.Filter{ClientIDs: []string{"c0"}, From: from}); err != nil || n == 0 {
			t.Fatalf("stale %v: hot count %d %v", stale, n, err)
		}
		_, err = s.Get(context.Background(), "below-01", time.Time{})
		check503(fmt.Sprintf("stale %v: cold get", stale), err)
		if _, err := s.Get(context.Background(), "at-01", time.Time{}); err != nil {
			t.Fatalf("stale %v: hot get: %v", stale, err)
		}
	}
	// When stale, the fence — not the old boundary — divides: [boundary, fence) is refused.
	_, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c0"}, From: boundary}, Size: 5})
	check503("stale: between boundary and fence", err)
	// Back up: answered again.
	f.mu.Lock()
	f.coldErr = nil
	f.mu.Unlock()
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := paginate(t, s, event.Filter{ClientIDs: []string{"c0"}}, false, 50, nil), expected(all, []string{"c0"}, time.Time{}, time.Time{}, false); !slices.Equal(got, want) {
		t.Fatal("after recovery: pagination differs")
	}
}

// Before the first boundary read, only ranges Elasticsearch alone is sure to hold are answered.
func TestUnknownBoundaryAtStart(t *testing.T) {
	f, _ := world(t)
	now := boundary.AddDate(0, 0, 40)
	s := newStore(f, func() time.Time { return now })
	if _, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c0"}}, Size: 5}); !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("oldest page before any read: %v", err)
	}
	if _, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c0"}, From: now.AddDate(0, 0, -30)}, Size: 5}); err != nil {
		t.Fatalf("recent page before any read: %v", err)
	}
	if f.count("cold.page") != 0 {
		t.Fatal("PostgreSQL was asked with an unknown boundary")
	}
}

func TestBoundaryNeverMovesBackInMemory(t *testing.T) {
	f, _ := world(t)
	s := newStore(f, fixedClock)
	_ = s.Refresh(context.Background())
	f.mu.Lock()
	f.boundary = boundary.AddDate(0, 0, -1)
	f.mu.Unlock()
	_ = s.Refresh(context.Background())
	if sp := s.split(); !sp.known || !sp.at.Equal(boundary) {
		t.Fatalf("split %+v, want the later boundary %s", sp, boundary)
	}
}

// PostgreSQL restored from before a retention pass: its boundary is behind the days the
// retention log records as deleted. Until the archiver moves it, a query reaching below the
// last deleted day is refused (503) rather than answered from Elasticsearch, which no longer
// holds those days; the rest is served as usual, and all of it once the boundary catches up.
func TestBoundaryBehindRetentionLogRefusesTheGap(t *testing.T) {
	f := newFake()
	now := fixedClock()
	day := 24 * time.Hour
	dropped := now.Add(-40 * day).Truncate(day)
	f.boundary = dropped.Add(-10 * day) // the restored database's boundary
	f.dropped = dropped
	old := event.Event{ID: "old", ClientID: "c", Timestamp: dropped.Add(-5 * day), IngestedAt: now}
	recent := event.Event{ID: "recent", ClientID: "c", Timestamp: now.Add(-time.Hour), IngestedAt: now}
	f.cold["old"], f.hot["recent"] = old, recent
	s := newStore(f, fixedClock)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := func(from time.Time) (int, error) {
		hits, err := s.Page(context.Background(), event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c"}, From: from}, Size: 10})
		return len(hits), err
	}
	if _, err := q(time.Time{}); !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("a range below the last deleted day: %v, want unavailable", err)
	}
	if _, err := s.Count(context.Background(), event.Filter{ClientIDs: []string{"c"}}); !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("count below the last deleted day: %v, want unavailable", err)
	}
	if n, err := q(dropped); err != nil || n != 1 {
		t.Fatalf("a range above the last deleted day: %d %v, want the recent event", n, err)
	}
	// The archiver repaired: the boundary caught up.
	f.mu.Lock()
	f.boundary = dropped
	f.mu.Unlock()
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := q(time.Time{}); err != nil || n != 2 {
		t.Fatalf("after the repair: %d %v, want both events", n, err)
	}
}
