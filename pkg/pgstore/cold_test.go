package pgstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// coldRows are events of three clients whose ids exercise byte order: upper case sorts before
// lower case, multi-byte UTF-8 after ASCII, "a" before "a0" — orders a linguistic collation would
// change. Many share a timestamp.
func coldRows(base time.Time) []event.Event {
	ids := []string{"A", "Z", "a", "a0", "a-", "b", "é", "ü", "日", "~", "0", "_", "aB", "ab", "Ab"}
	var rows []event.Event
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 600; i++ {
		ts := base.Add(time.Duration(r.IntN(40)) * time.Microsecond) // 40 instants: many ties
		if i%5 == 0 {
			ts = base.Add(time.Duration(r.IntN(3)) * time.Hour)
		}
		typ := []string{"click", "view", ""}[i%3]
		rows = append(rows, event.Event{ID: fmt.Sprintf("%s%03d", ids[i%len(ids)], i), ClientID: fmt.Sprintf("c%d", i%3),
			Type: typ, Timestamp: ts, IngestedAt: ts, Payload: []byte(fmt.Sprintf(`{"i": %d}`, i))})
	}
	return rows
}

// want is the events of rows matching f in (timestamp, id) byte order.
func want(rows []event.Event, f event.Filter, desc bool) []string {
	var out []event.Event
	for _, r := range rows {
		if !slices.Contains(f.ClientIDs, r.ClientID) || len(f.Types) > 0 && !slices.Contains(f.Types, r.Type) ||
			!f.From.IsZero() && r.Timestamp.Before(f.From) || !f.To.IsZero() && !r.Timestamp.Before(f.To) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b event.Event) int {
		c := a.Timestamp.Compare(b.Timestamp)
		if c == 0 {
			c = strings.Compare(a.ID, b.ID) // Go compares strings bytewise, like keyword sort values
		}
		if desc {
			c = -c
		}
		return c
	})
	ids := make([]string, len(out))
	for i, r := range out {
		ids[i] = r.ID
	}
	return ids
}

func TestColdPagesFollowByteOrderAcrossTies(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, 2*time.Minute)
	base := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	rows := coldRows(base)
	if _, err := s.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
		t.Fatal(err)
	}
	filters := map[string]event.Filter{
		"one client":          {ClientIDs: []string{"c1"}},
		"two clients, repeat": {ClientIDs: []string{"c2", "c0", "c2"}},
		"types":               {ClientIDs: []string{"c0", "c1", "c2"}, Types: []string{"click", "view"}},
		"bounded":             {ClientIDs: []string{"c0", "c1"}, From: base.Add(7 * time.Microsecond), To: base.Add(time.Hour)},
		"to only":             {ClientIDs: []string{"c2"}, To: base.Add(20 * time.Microsecond)},
		"empty range":         {ClientIDs: []string{"c2"}, From: base.Add(time.Hour), To: base.Add(time.Hour)},
		"unknown client":      {ClientIDs: []string{"nobody"}},
	}
	for name, f := range filters {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s desc=%v", name, desc), func(t *testing.T) {
				exp := want(rows, f, desc)
				var got []string
				var after *event.Position
				for page := 0; page < 1000; page++ {
					evs, err := s.Page(ctx, event.PageQuery{Filter: f, Desc: desc, After: after, Size: 7})
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range evs {
						got = append(got, e.ID)
					}
					if len(evs) < 7 {
						break
					}
					last := evs[len(evs)-1]
					after = &event.Position{Timestamp: last.Timestamp, ID: last.ID}
				}
				if !slices.Equal(got, exp) {
					t.Fatalf("got %d events %v\nwant %d %v", len(got), head(got), len(exp), head(exp))
				}
				n, err := s.Count(ctx, f)
				if err != nil || n != int64(len(exp)) {
					t.Fatalf("count %d %v, want %d", n, err, len(exp))
				}
			})
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 20)] }

func TestColdPageReturnsTheStoredEvent(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	ts := time.Date(2026, 2, 3, 4, 5, 6, 789012000, time.UTC)
	rows := []event.Event{
		{ID: "with", ClientID: "c", Type: "t", Timestamp: ts, IngestedAt: ts.Add(time.Second), Payload: []byte(`{"b":[1,2],"a":"x"}`)},
		{ID: "without", ClientID: "c", Timestamp: ts, IngestedAt: ts},
	}
	if _, err := s.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Page(ctx, event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c"}}, Size: 10})
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v %v", evs, err)
	}
	w := evs[0]
	if w.ID != "with" || w.Type != "t" || !w.Timestamp.Equal(ts) || w.Timestamp.Location() != time.UTC ||
		!w.IngestedAt.Equal(ts.Add(time.Second)) || string(w.Payload) != `{"a": "x", "b": [1, 2]}` {
		t.Fatalf("with: %+v (%s)", w, w.Payload)
	}
	if o := evs[1]; o.ID != "without" || o.Type != "" || o.Payload != nil {
		t.Fatalf("without: %+v", o)
	}
	if _, err := s.Page(ctx, event.PageQuery{Size: 10}); err == nil {
		t.Fatal("a page without clientIds was accepted")
	}
	if _, err := s.Count(ctx, event.Filter{}); err == nil {
		t.Fatal("a count without clientIds was accepted")
	}
}

func TestColdBoundaryOnlyMovesForward(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	if _, ok, err := s.ColdBoundary(ctx, "events"); err != nil || ok {
		t.Fatalf("fresh schema: ok=%v err=%v, want no boundary", ok, err)
	}
	d := func(day int) time.Time { return time.Date(2026, 3, day, 0, 0, 0, 0, time.UTC) }
	steps := []struct{ to, want time.Time }{
		{d(10), d(10)},
		{d(12), d(12)},
		{d(11), d(12)}, // back: refused, the later boundary stays
		{d(12), d(12)},
		{d(13), d(13)},
	}
	for i, st := range steps {
		got, err := s.AdvanceColdBoundary(ctx, "events", st.to)
		if err != nil || !got.Equal(st.want) {
			t.Fatalf("step %d: advance to %s: %s %v, want %s", i, st.to, got, err, st.want)
		}
		b, ok, err := s.ColdBoundary(ctx, "events")
		if err != nil || !ok || !b.Equal(st.want) {
			t.Fatalf("step %d: read %s %v %v, want %s", i, b, ok, err, st.want)
		}
	}
	// Per prefix: another prefix has none.
	if _, ok, err := s.ColdBoundary(ctx, "other"); err != nil || ok {
		t.Fatalf("other prefix: ok=%v err=%v", ok, err)
	}
	if _, err := s.AdvanceColdBoundary(ctx, "events", time.Time{}); err == nil {
		t.Fatal("zero boundary accepted")
	}
}

func TestColdBoundaryWithoutTableIsAnError(t *testing.T) {
	cfg := testenv.PG(t) // a fresh schema, never migrated
	ctx := testenv.Context(t, time.Minute)
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.ColdBoundary(ctx, "events"); err == nil {
		t.Fatal("no table, yet the boundary read succeeded: a misconfigured search would take the cold tier for empty")
	}
}
