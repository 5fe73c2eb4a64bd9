package esstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/spillway/spillway/pkg/event"
)

// The feed reads event indices shard by shard in _seq_no order. Elasticsearch numbers every
// operation on a shard with a sequence number; every operation at or below the shard's global
// checkpoint has been processed by every in-sync copy, so after a refresh that starts later it
// is visible, and no operation at or below it can appear afterwards. Reading (position, global
// checkpoint] after a refresh therefore misses nothing, however late an event's bulk request
// was retried or however skewed the ingest servers' clocks are. The archiver and the live
// stream both follow Elasticsearch this way.

// Shards lists every shard of the event indices with its checkpoints, read from the primary
// copy, sorted by index name and shard number.
func (s *Store) Shards(ctx context.Context) ([]event.Shard, error) {
	res, err := s.es.Indices.Stats(
		s.es.Indices.Stats.WithIndex(s.Pattern()),
		s.es.Indices.Stats.WithMetric("docs"),
		s.es.Indices.Stats.WithLevel("shards"),
		s.es.Indices.Stats.WithFilterPath("indices.*.uuid", "indices.*.shards.*.routing.primary", "indices.*.shards.*.seq_no"),
		s.es.Indices.Stats.WithContext(ctx),
	)
	var out struct {
		Indices map[string]struct {
			UUID   string `json:"uuid"`
			Shards map[string][]struct {
				Routing struct {
					Primary bool `json:"primary"`
				} `json:"routing"`
				SeqNo struct {
					MaxSeqNo         int64 `json:"max_seq_no"`
					GlobalCheckpoint int64 `json:"global_checkpoint"`
				} `json:"seq_no"`
			} `json:"shards"`
		} `json:"indices"`
	}
	if err := decode(res, err, "shard stats", &out); err != nil {
		return nil, err
	}
	var shards []event.Shard
	for name, idx := range out.Indices {
		for num, copies := range idx.Shards {
			n, err := strconv.Atoi(num)
			if err != nil {
				return nil, fmt.Errorf("shard stats: shard %q of %s", num, name)
			}
			for _, c := range copies {
				if !c.Routing.Primary {
					continue
				}
				shards = append(shards, event.Shard{Index: name, IndexUUID: idx.UUID, Shard: n,
					GlobalCheckpoint: c.SeqNo.GlobalCheckpoint, MaxSeqNo: c.SeqNo.MaxSeqNo})
			}
		}
	}
	sort.Slice(shards, func(i, j int) bool {
		if shards[i].Index != shards[j].Index {
			return shards[i].Index < shards[j].Index
		}
		return shards[i].Shard < shards[j].Shard
	})
	return shards, nil
}

// RefreshIndices refreshes the named indices (all event indices when none are named).
// Call it after Shards and before ReadShard so the checkpoints' operations are visible.
func (s *Store) RefreshIndices(ctx context.Context, indices ...string) error {
	if len(indices) == 0 {
		return s.Refresh(ctx)
	}
	res, err := s.es.Indices.Refresh(s.es.Indices.Refresh.WithIndex(indices...),
		s.es.Indices.Refresh.WithIgnoreUnavailable(true), s.es.Indices.Refresh.WithContext(ctx))
	var out struct {
		Shards struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"_shards"`
	}
	if err := decode(res, err, "refresh", &out); err != nil {
		return err
	}
	// A partly failed refresh still answers 200; a copy that did not refresh could serve a read
	// that misses operations below the checkpoint, and the reader would move past them.
	if out.Shards.Failed > 0 {
		return fmt.Errorf("refresh: %d of %d shard copies failed: %w", out.Shards.Failed, out.Shards.Total, event.ErrUnavailable)
	}
	return nil
}

// _seq_no order.
func (s *Store) ReadShard(ctx context.Context, q event.FeedQuery) ([]event.Sequenced, error) {
	if q.UpTo <= q.After {
		return nil, nil
	}
	filter := []any{
		map[string]any{"range": map[string]any{"_seq_no": map[string]any{"gt": q.After, "lte": q.UpTo}}},
	}
	if len(q.ClientIDs) > 0 {
		filter = append(filter, map[string]any{"terms": map[string]any{"clientId": q.ClientIDs}})
	}
	if len(q.Types) > 0 {
		filter = append(filter, map[string]any{"terms": map[string]any{"type": q.Types}})
	}
	if !q.IngestedFrom.IsZero() {
		filter = append(filter, map[string]any{"range": map[string]any{"ingestedAt": map[string]any{
			"gte": event.Truncate(q.IngestedFrom).Format(event.TimeFormat)}}})
	}
	body := map[string]any{
		"size":                q.Size,
		"seq_no_primary_term": true,
		"track_total_hits":    false,
		"query":               map[string]any{"bool": map[string]any{"filter": filter}},
		"sort":                []any{map[string]any{"_seq_no": "asc"}},
	}
	var out searchResponse
	// Strict: an index that vanished or closed, or a shard that did not answer, must be an
	// error, not an empty page — an empty page moves the archiver's checkpoint to UpTo.
	err := s.search(ctx, q.Index, body, &out, append(s.strict(),
		s.es.Search.WithPreference("_shards:"+strconv.Itoa(q.Shard)))...)
	if err != nil {
		return nil, err
	}
	docs := make([]event.Sequenced, 0, len(out.Hits.Hits))
	for _, h := range out.Hits.Hits {
		docs = append(docs, event.Sequenced{SeqNo: h.SeqNo, Event: h.Source.event()})
	}
	return docs, nil
}
