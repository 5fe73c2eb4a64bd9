package esstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestArchiveReads(t *testing.T) {
	cfg := testenv.ES(t)
	cfg.Shards = 2
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)
	ingested := time.Date(2026, 2, 12, 8, 0, 0, 0, time.UTC)
	// 40 events on day 1 (one every 30 minutes... plus a microsecond apart pair) and 10 on day 2.
	var evs []event.Event
	for i := 0; i < 40; i++ {
		evs = append(evs, event.Event{ID: fmt.Sprintf("d1-%02d", i), ClientID: "c", Type: "t",
			Timestamp: day.Add(time.Duration(i) * 30 * time.Minute), IngestedAt: ingested.Add(time.Duration(i) * time.Second),
			Payload: json.RawMessage(`{"i":` + fmt.Sprint(i) + `}`)})
	}
	for i := 0; i < 10; i++ {
		evs = append(evs, event.Event{ID: fmt.Sprintf("d2-%02d", i), ClientID: "c",
			Timestamp: day.Add(24*time.Hour + time.Duration(i)*time.Microsecond), IngestedAt: ingested})
	}
	created, conflicts, err := testenv.BulkCreate(ctx, s, evs)
	if err != nil || created != 50 || conflicts != 0 {
		t.Fatalf("bulk: %d %d %v", created, conflicts, err)
	}
	created, conflicts, err = testenv.BulkCreate(ctx, s, evs[:3])
	if err != nil || created != 0 || conflicts != 3 {
		t.Fatalf("bulk again: %d created, %d conflicts, %v", created, conflicts, err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	shards, err := s.Shards(ctx)
	if err != nil || len(shards) != 4 {
		t.Fatalf("shards %+v %v", shards, err)
	}
	// Counts per range, summed over the shards, split by a _seq_no bound.
	ranges := []event.Range{{From: day, To: day.Add(10 * time.Hour)}, {From: day.Add(10 * time.Hour), To: day.Add(24 * time.Hour)}}
	var totals, hashes [2]int64
	var upToNone int64
	var allIDs []string
	for _, sh := range shards {
		if sh.Index != s.IndexFor(day) {
			continue
		}
		c, err := s.CountShard(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint, ranges)
		if err != nil {
			t.Fatal(err)
		}
		for i := range c {
			if c[i].UpTo != c[i].Total {
				t.Fatalf("bound at the global checkpoint excludes documents: %+v", c[i])
			}
			totals[i] += c[i].Total
			hashes[i] += c[i].UpToHash
		}
		c, err = s.CountShard(ctx, sh.Index, sh.Shard, -1, ranges)
		if err != nil {
			t.Fatal(err)
		}
		upToNone += c[0].UpTo + c[1].UpTo
		ids, err := s.ShardIDs(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint, event.Range{From: day, To: day.Add(24 * time.Hour)}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !sort.StringsAreSorted(ids) {
			t.Fatalf("ids not sorted: %v", ids)
		}
		allIDs = append(allIDs, ids...)
		if len(ids) > 1 {
			if _, err := s.ShardIDs(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint, event.Range{From: day, To: day.Add(24 * time.Hour)}, len(ids)-1); !errors.Is(err, event.ErrTooMany) {
				t.Fatalf("ids over the limit: %v", err)
			}
		}
		none, err := s.ShardIDs(ctx, sh.Index, sh.Shard, -1, event.Range{From: day, To: day.Add(24 * time.Hour)}, 100)
		if err != nil || len(none) != 0 {
			t.Fatalf("ids below seq 0: %v %v", none, err)
		}
	}
	if totals != [2]int64{20, 20} || upToNone != 0 || len(allIDs) != 40 {
		t.Fatalf("totals %v, up to -1: %d, ids %d", totals, upToNone, len(allIDs))
	}
	// The idHash sums are event.IDHash summed in Go: ingest stored it, the aggregation adds it up.
	var want [2]int64
	for _, e := range evs[:40] {
		want[e.Timestamp.Sub(day)/(10*time.Hour)] += event.IDHash(e.ID)
	}
	if hashes != want || want[0] == 0 {
		t.Fatalf("id digest sums %v, want %v", hashes, want)
	}

	// Microsecond bounds mean the same thing as in PostgreSQL.
	d2 := day.Add(24 * time.Hour)
	var n2 int64
	for _, sh := range shards {
		if sh.Index == s.IndexFor(d2) {
			c, err := s.CountShard(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint, []event.Range{{From: d2.Add(3 * time.Microsecond), To: d2.Add(7 * time.Microsecond)}})
			if err != nil {
				t.Fatal(err)
			}
			n2 += c[0].Total
		}
	}
	if n2 != 4 {
		t.Fatalf("microsecond range counted %d, want 4", n2)
	}
	if n, err := s.CountRange(ctx, event.Range{From: day, To: d2.Add(5 * time.Microsecond)}); err != nil || n != 45 {
		t.Fatalf("count range %d %v", n, err)
	}

	docs, err := s.DocsByID(ctx, []string{"d1-07", "d2-03", "nope"}, event.Range{From: day, To: day.Add(72 * time.Hour)})
	if err != nil || len(docs) != 2 {
		t.Fatalf("docs by id: %+v %v", docs, err)
	}
	for _, d := range docs {
		if d.ID == "d1-07" && string(d.Payload) != `{"i":7}` {
			t.Fatalf("payload %s", d.Payload)
		}
	}

	// Oldest ingestedAt after a sequence number.
	for _, sh := range shards {
		if sh.Index != s.IndexFor(day) {
			continue
		}
		oldest, ok, err := s.OldestAfter(ctx, sh.Index, sh.Shard, -1)
		if err != nil || !ok || oldest.Before(ingested) || oldest.After(ingested.Add(40*time.Second)) {
			t.Fatalf("oldest %v %v %v", oldest, ok, err)
		}
		if _, ok, err := s.OldestAfter(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint); err != nil || ok {
			t.Fatalf("oldest after the end: %v %v", ok, err)
		}
	}

	// A scan of a time range in small pages sees each document once.
	seen := map[string]int{}
	pages := 0
	err = s.ScanRange(ctx, event.Range{From: day.Add(5 * time.Hour), To: d2.Add(time.Hour)}, 7, func(docs []event.Event) error {
		pages++
		for _, d := range docs {
			seen[d.ID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 30+10 || pages < 6 {
		t.Fatalf("scan saw %d documents in %d pages", len(seen), pages)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", id, n)
		}
	}
	// Nothing to scan is not an error.
	if err := s.ScanRange(ctx, event.Range{From: day.Add(-48 * time.Hour), To: day.Add(-24 * time.Hour)}, 7, func([]event.Event) error {
		return errors.New("called for an empty range")
	}); err != nil {
		t.Fatal(err)
	}
}

// Reading a shard of an index that is gone must fail, not look empty: an empty read moves the
// archiver's checkpoint to the bound.
func TestReadShardOfMissingIndexFails(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ReadShard(ctx, event.FeedQuery{Index: cfg.IndexPrefix + "-2020.01.01", Shard: 0, After: -1, UpTo: 10, Size: 10})
	if err == nil {
		t.Fatal("reading a missing index succeeded")
	}
	if _, err := s.CountShard(ctx, cfg.IndexPrefix+"-2020.01.01", 0, 10, []event.Range{{From: time.Now(), To: time.Now().Add(time.Hour)}}); err == nil {
		t.Fatal("counting a missing index succeeded")
	}
	// Without any index, range reads are empty, not errors.
	r := event.Range{From: time.Now().Add(-time.Hour), To: time.Now()}
	if n, err := s.CountRange(ctx, r); err != nil || n != 0 {
		t.Fatalf("count without indices: %d %v", n, err)
	}
	if err := s.ScanRange(ctx, r, 10, func([]event.Event) error { return errors.New("called") }); err != nil {
		t.Fatalf("scan without indices: %v", err)
	}
}
