package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/spillway/spillway/pkg/event"
)

// Reads for the archiver's verification, lag and backfill. Time bounds are written at the
// storage precision (microseconds), the precision of both stores, so that a range means the
// same events in Elasticsearch and PostgreSQL.

// rangeFilter is the @timestamp range filter of r, at storage precision.
func rangeFilter(r event.Range) map[string]any {
	return map[string]any{"range": map[string]any{"@timestamp": map[string]any{
		"gte": event.Truncate(r.From).Format(event.TimeFormat),
		"lt":  event.Truncate(r.To).Format(event.TimeFormat),
	}}}
}

// shardPreference routes a search to one shard of an index.
func (s *Store) shardPreference(shard int) func(*esapi.SearchRequest) {
	return s.es.Search.WithPreference("_shards:" + strconv.Itoa(shard))
}

// strict makes a search fail instead of silently answering from fewer shards or without a
// missing index: the archiver must never mistake "not searched" for "empty".
func (s *Store) strict() []func(*esapi.SearchRequest) {
	return []func(*esapi.SearchRequest){
		s.es.Search.WithIgnoreUnavailable(false),
		s.es.Search.WithAllowPartialSearchResults(false),
	}
}

// CountShard counts, for each range, the documents of one shard whose @timestamp is in it, in
// total and with _seq_no ≤ upTo. Ranges must not overlap; at most 1,000 per call.
func (s *Store) CountShard(ctx context.Context, index string, shard int, upTo int64, ranges []event.Range) ([]event.ShardCount, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	if len(ranges) > 1000 {
		return nil, fmt.Errorf("count shard: %d ranges, at most 1000", len(ranges))
	}
	outer := event.Range{From: ranges[0].From, To: ranges[0].To}
	filters := make([]any, len(ranges))
	for i, r := range ranges {
		filters[i] = rangeFilter(r)
		if r.From.Before(outer.From) {
			outer.From = r.From
		}
		if r.To.After(outer.To) {
			outer.To = r.To
		}
	}
	body := map[string]any{
		"size":             0,
		"track_total_hits": false,
		"query":            map[string]any{"bool": map[string]any{"filter": []any{rangeFilter(outer)}}},
		"aggs": map[string]any{"r": map[string]any{
			"filters": map[string]any{"filters": filters},
			"aggs": map[string]any{"upto": map[string]any{
				"filter": map[string]any{"range": map[string]any{"_seq_no": map[string]any{"lte": upTo}}},
				"aggs":   map[string]any{"h": map[string]any{"sum": map[string]any{"field": "idHash"}}},
			}},
		}},
	}
	var out struct {
		Aggregations struct {
			R struct {
				Buckets []struct {
					DocCount int64 `json:"doc_count"`
					UpTo     struct {
						DocCount int64 `json:"doc_count"`
						H        struct {
							Value float64 `json:"value"`
						} `json:"h"`
					} `json:"upto"`
				} `json:"buckets"`
			} `json:"r"`
		} `json:"aggregations"`
	}
	opts := append(s.strict(), s.shardPreference(shard))
	if err := s.search(ctx, index, body, &out, opts...); err != nil {
		return nil, fmt.Errorf("count %s[%d]: %w", index, shard, err)
	}
	if len(out.Aggregations.R.Buckets) != len(ranges) {
		return nil, fmt.Errorf("count %s[%d]: %d buckets for %d ranges", index, shard, len(out.Aggregations.R.Buckets), len(ranges))
	}
	counts := make([]event.ShardCount, len(ranges))
	for i, b := range out.Aggregations.R.Buckets {
		// A double, exact below 2^53: ranges of up to 2^29 documents of 24-bit digests.
		counts[i] = event.ShardCount{Total: b.DocCount, UpTo: b.UpTo.DocCount, UpToHash: int64(math.Round(b.UpTo.H.Value))}
	}
	return counts, nil
}

// ShardIDs returns the ids of one shard's documents with @timestamp in r and _seq_no ≤ upTo,
// sorted bytewise (keyword order, the order of PostgreSQL's COLLATE "C"), or event.ErrTooMany when
// there are more than limit.
func (s *Store) ShardIDs(ctx context.Context, index string, shard int, upTo int64, r event.Range, limit int) ([]string, error) {
	var ids []string
	var after []json.RawMessage
	for {
		page := min(10000, limit+1-len(ids))
		body := map[string]any{
			"size":             page,
			"track_total_hits": false,
			"_source":          false,
			"query": map[string]any{"bool": map[string]any{"filter": []any{
				rangeFilter(r),
				map[string]any{"range": map[string]any{"_seq_no": map[string]any{"lte": upTo}}},
			}}},
			"sort": []any{map[string]any{"id": "asc"}},
		}
		if after != nil {
			body["search_after"] = after
		}
		var out searchResponse
		opts := append(s.strict(), s.shardPreference(shard))
		if err := s.search(ctx, index, body, &out, opts...); err != nil {
			return nil, fmt.Errorf("ids of %s[%d]: %w", index, shard, err)
		}
		for _, h := range out.Hits.Hits {
			var id string
			if len(h.Sort) != 1 || json.Unmarshal(h.Sort[0], &id) != nil {
				return nil, fmt.Errorf("ids of %s[%d]: unexpected sort values %s", index, shard, h.Sort)
			}
			ids = append(ids, id)
			after = h.Sort
		}
		if len(ids) > limit {
			return nil, fmt.Errorf("ids of %s[%d]: %w (more than %d)", index, shard, event.ErrTooMany, limit)
		}
		if len(out.Hits.Hits) < page {
			return ids, nil
		}
	}
}

// DocsByID returns the documents with the ids and an @timestamp in r, from every event index
// (at most 10,000 ids). Within one UTC day an id names one document; a range across midnight may
// return one per day.
func (s *Store) DocsByID(ctx context.Context, ids []string, r event.Range) ([]event.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) > 10000 {
		return nil, fmt.Errorf("docs by id: %d ids, at most 10000", len(ids))
	}
	body := map[string]any{
		"size":             2 * len(ids),
		"track_total_hits": false,
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"ids": map[string]any{"values": ids}},
			rangeFilter(r),
		}}},
	}
	var out searchResponse
	if err := s.search(ctx, s.Pattern(), body, &out, s.es.Search.WithAllowPartialSearchResults(false)); err != nil {
		return nil, fmt.Errorf("docs by id: %w", err)
	}
	docs := make([]event.Event, 0, len(out.Hits.Hits))
	for _, h := range out.Hits.Hits {
		docs = append(docs, h.Source.event())
	}
	return docs, nil
}

// OldestAfter returns the earliest ingestedAt among one shard's visible documents with
// _seq_no > after; ok is false when there are none.
func (s *Store) OldestAfter(ctx context.Context, index string, shard int, after int64) (oldest time.Time, ok bool, err error) {
	body := map[string]any{
		"size":             0,
		"track_total_hits": false,
		"query":            map[string]any{"range": map[string]any{"_seq_no": map[string]any{"gt": after}}},
		"aggs":             map[string]any{"oldest": map[string]any{"min": map[string]any{"field": "ingestedAt"}}},
	}
	var out struct {
		Aggregations struct {
			Oldest struct {
				Value         *float64 `json:"value"`
				ValueAsString string   `json:"value_as_string"`
			} `json:"oldest"`
		} `json:"aggregations"`
	}
	opts := append(s.strict(), s.shardPreference(shard))
	if err := s.search(ctx, index, body, &out, opts...); err != nil {
		return time.Time{}, false, fmt.Errorf("oldest of %s[%d]: %w", index, shard, err)
	}
	if out.Aggregations.Oldest.Value == nil {
		return time.Time{}, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, out.Aggregations.Oldest.ValueAsString)
	if err != nil {
		// Fall back on the millisecond value.
		t = time.UnixMilli(int64(*out.Aggregations.Oldest.Value))
	}
	return t.UTC(), true, nil
}

// CountRange counts the visible documents of every event index with @timestamp in r.
func (s *Store) CountRange(ctx context.Context, r event.Range) (int64, error) {
	body, _ := json.Marshal(map[string]any{"query": rangeFilter(r)})
	res, err := s.es.Count(s.es.Count.WithIndex(s.Pattern()), s.es.Count.WithBody(bytes.NewReader(body)),
		s.es.Count.WithAllowNoIndices(true), s.es.Count.WithContext(ctx))
	var out struct {
		Count int64 `json:"count"`
	}
	if err := decode(res, err, "count", &out); err != nil {
		return 0, err
	}
	return out.Count, nil
}

// ScanRange reads every document of the event indices with @timestamp in r, in pages of size,
// from one point-in-time snapshot (documents indexed after the scan starts are not included:
// the feed archives those). fn gets each page; an error from fn stops the scan.
func (s *Store) ScanRange(ctx context.Context, r event.Range, size int, fn func([]event.Event) error) error {
	const keepAlive = "5m"
	res, err := s.es.OpenPointInTime([]string{s.Pattern()}, keepAlive, s.es.OpenPointInTime.WithContext(ctx))
	var pit struct {
		ID string `json:"id"`
	}
	if err := decode(res, err, "open point in time", &pit); err != nil {
		return err
	}
	defer func() { s.closePIT(pit.ID) }()
	var after []json.RawMessage
	for {
		body := map[string]any{
			"size":             size,
			"track_total_hits": false,
			"query":            rangeFilter(r),
			"pit":              map[string]any{"id": pit.ID, "keep_alive": keepAlive},
			// _shard_doc is the cheapest total order of a point in time.
			"sort": []any{map[string]any{"_shard_doc": "asc"}},
		}
		if after != nil {
			body["search_after"] = after
		}
		var out searchResponse
		if err := s.pitSearch(ctx, "scan", body, &out); err != nil {
			return err
		}
		if out.PitID != "" {
			pit.ID = out.PitID
		}
		if len(out.Hits.Hits) == 0 {
			return nil
		}
		docs := make([]event.Event, len(out.Hits.Hits))
		for i, h := range out.Hits.Hits {
			docs[i] = h.Source.event()
		}
		after = out.Hits.Hits[len(out.Hits.Hits)-1].Sort
		if err := fn(docs); err != nil {
			return err
		}
		if len(out.Hits.Hits) < size {
			return nil
		}
	}
}

// pitSearch runs a search of a point in time: no index and no index options (the point in time
// names the indices, and Elasticsearch refuses both), never partial results.
func (s *Store) pitSearch(ctx context.Context, op string, body any, out *searchResponse) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	res, err := s.es.Search(s.es.Search.WithBody(bytes.NewReader(b)), s.es.Search.WithContext(ctx),
		s.es.Search.WithAllowPartialSearchResults(false))
	return decode(res, err, op, out)
}
