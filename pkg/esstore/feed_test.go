package esstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestFeedReadsShardsBySeqNo(t *testing.T) {
	cfg := testenv.ES(t)
	cfg.Shards = 2
	cfg.RefreshInterval = 50 * time.Millisecond // Put waits for a refresh
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	shards, err := s.Shards(ctx)
	if err != nil || len(shards) != 0 {
		t.Fatalf("shards before any index: %v %v", shards, err)
	}
	day1 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	start := time.Now()
	const n = 30
	for i := 0; i < n; i++ {
		ts := day1.Add(time.Duration(i%2) * 24 * time.Hour) // two daily indices
		client := fmt.Sprintf("c%d", i%3)
		if _, err := testenv.Put(ctx, s, event.Event{ID: fmt.Sprintf("e%02d", i), ClientID: client, Type: "t", Timestamp: ts, IngestedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	shards, err = s.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 4 {
		t.Fatalf("want 2 indices x 2 shards, got %+v", shards)
	}
	if err := s.RefreshIndices(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sh := range shards {
		if sh.IndexUUID == "" || sh.GlobalCheckpoint != sh.MaxSeqNo {
			t.Errorf("shard %+v", sh)
		}
		// Read the shard in pages of 2 and check the order and the bounds.
		after := int64(-1)
		for {
			docs, err := s.ReadShard(ctx, event.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: after, UpTo: sh.GlobalCheckpoint, Size: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				break
			}
			for _, d := range docs {
				if d.SeqNo <= after || d.SeqNo > sh.GlobalCheckpoint {
					t.Fatalf("seq %d outside (%d, %d]", d.SeqNo, after, sh.GlobalCheckpoint)
				}
				after = d.SeqNo
				if seen[d.Event.ID] {
					t.Fatalf("%s read twice", d.Event.ID)
				}
				seen[d.Event.ID] = true
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("feed read %d of %d documents", len(seen), n)
	}

	// Filters: one client, ingested since the start.
	var c1 int
	for _, sh := range shards {
		docs, err := s.ReadShard(ctx, event.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: -1, UpTo: sh.GlobalCheckpoint, Size: 100,
			ClientIDs: []string{"c1"}, Types: []string{"t"}, IngestedFrom: start.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			if d.Event.ClientID != "c1" {
				t.Fatalf("filter let %s through", d.Event.ClientID)
			}
		}
		c1 += len(docs)
	}
	if c1 != n/3 {
		t.Fatalf("client c1: %d events, want %d", c1, n/3)
	}
}
