package esstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestPageAndCount(t *testing.T) {
	cfg := testenv.ES(t)
	cfg.RefreshInterval = 50 * time.Millisecond // Put waits for a refresh
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}

	// Before any index exists the alias is missing: queries answer empty, not 404.
	if n, err := s.Count(ctx, event.Filter{ClientIDs: []string{"a"}}); err != nil || n != 0 {
		t.Fatalf("count without indices: %d %v", n, err)
	}
	if hits, err := s.Page(ctx, event.PageQuery{Filter: event.Filter{ClientIDs: []string{"a"}}, Size: 10}); err != nil || len(hits) != 0 {
		t.Fatalf("page without indices: %v %v", hits, err)
	}

	if u, err := s.IndexUUIDs(ctx); err != nil || len(u) != 0 {
		t.Fatalf("index uuids without indices: %v %v", u, err)
	}

	// Two days, a shared timestamp (ties broken by id), and clients whose names look like query syntax.
	t0 := time.Date(2026, 2, 3, 23, 59, 59, 999999000, time.UTC)
	put := func(id, client string, ts time.Time) {
		t.Helper()
		if _, err := testenv.Put(ctx, s, event.Event{ID: id, ClientID: client, Type: "k", Timestamp: ts, IngestedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	put("b", "a", t0)
	put("a", "a", t0)
	put("c", "a", t0.Add(time.Microsecond)) // next day's index
	put("d", "a", t0.Add(-time.Microsecond))
	put("x1", "*", t0)
	put("x2", "a OR b", t0)
	put("x3", "a*", t0)

	// The indices' UUIDs from the metadata are those the shard statistics report.
	uuids, err := s.IndexUUIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shards, err := s.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		if !uuids[sh.IndexUUID] {
			t.Errorf("shard %+v: uuid not among %v", sh, uuids)
		}
	}
	if len(uuids) != 2 {
		t.Errorf("uuids %v, want the two daily indices", uuids)
	}

	page := func(q event.PageQuery) []string {
		t.Helper()
		hits, err := s.Page(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range hits {
			if e.Timestamp.IsZero() || !e.Timestamp.Equal(event.Truncate(e.Timestamp)) || e.Timestamp.Location() != time.UTC {
				t.Fatalf("event %+v: timestamp not a UTC time at storage precision", e)
			}
			ids = append(ids, e.ID)
		}
		return ids
	}
	a := event.Filter{ClientIDs: []string{"a"}}
	if got := fmt.Sprint(page(event.PageQuery{Filter: a, Size: 10})); got != "[d a b c]" {
		t.Errorf("asc: %s", got)
	}
	if got := fmt.Sprint(page(event.PageQuery{Filter: a, Size: 10, Desc: true})); got != "[c b a d]" {
		t.Errorf("desc: %s", got)
	}
	after := &event.Position{Timestamp: t0, ID: "a"}
	if got := fmt.Sprint(page(event.PageQuery{Filter: a, Size: 10, After: after})); got != "[b c]" {
		t.Errorf("asc after (t0, a): %s", got)
	}
	if got := fmt.Sprint(page(event.PageQuery{Filter: a, Size: 10, After: after, Desc: true})); got != "[d]" {
		t.Errorf("desc after (t0, a): %s", got)
	}

	// from inclusive, to exclusive, at microsecond precision.
	win := event.Filter{ClientIDs: []string{"a"}, From: t0, To: t0.Add(time.Microsecond)}
	if got := fmt.Sprint(page(event.PageQuery{Filter: win, Size: 10})); got != "[a b]" {
		t.Errorf("window: %s", got)
	}
	// Bounds outside date_nanos' range (1970–2262) are clamped instead of failing in Elasticsearch.
	wide := event.Filter{ClientIDs: []string{"a"}, From: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	if got := len(page(event.PageQuery{Filter: wide, Size: 10})); got != 4 {
		t.Errorf("wide window: %d events", got)
	}
	before := event.Filter{ClientIDs: []string{"a"}, To: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}
	if got := len(page(event.PageQuery{Filter: before, Size: 10})); got != 0 {
		t.Errorf("before 1970: %d events", got)
	}

	// Query-syntax lookalikes match only themselves.
	for client, want := range map[string]string{"*": "[x1]", "a OR b": "[x2]", "a*": "[x3]"} {
		if got := fmt.Sprint(page(event.PageQuery{Filter: event.Filter{ClientIDs: []string{client}}, Size: 10})); got != want {
			t.Errorf("client %q: %s, want %s", client, got, want)
		}
	}

	for _, tc := range []struct {
		f    event.Filter
		want int64
	}{
		{a, 4}, {win, 2}, {wide, 4}, {before, 0},
		{event.Filter{ClientIDs: []string{"a", "*"}}, 5},
		{event.Filter{ClientIDs: []string{"a"}, Types: []string{"other"}}, 0},
		{event.Filter{ClientIDs: []string{"a"}, Types: []string{"k"}}, 4},
	} {
		if n, err := s.Count(ctx, tc.f); err != nil || n != tc.want {
			t.Errorf("count %+v: %d %v, want %d", tc.f, n, err, tc.want)
		}
	}
}
