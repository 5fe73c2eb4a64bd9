package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Queries for the read API. Every condition is a structured term, terms or range filter: no
// value from a request is ever parsed as query syntax (no query_string), so a clientId such as
// "*" or "a OR b" matches only a document whose clientId is exactly that string.
//
// Pages are read with search_after over the total order (@timestamp, id) and no point-in-time.
// Sort keys are unique and immutable, so following the keys from the first page to the last
// returns every event that exists during the whole pagination exactly once, whatever is indexed
// meanwhile; an event indexed later appears only if it sorts after the position already
// reached. A point-in-time would add nothing to that guarantee: it would only hide events that
// arrive during the pagination, while pinning segments and a search context on the cluster per
// reader and tying each cursor to a context that expires. So Page uses none.

// The range of date_nanos: Elasticsearch rejects range bounds outside it with a 400.
var (
	minNanos = time.Unix(0, 0).UTC()
	maxNanos = time.Unix(0, math.MaxInt64).UTC()
)

// filterClauses builds the bool filter; empty is true when no stored event can match.
func filterClauses(f event.Filter) (clauses []any, empty bool) {
	clauses = []any{map[string]any{"terms": map[string]any{"clientId": f.ClientIDs}}}
	if len(f.Types) > 0 {
		clauses = append(clauses, map[string]any{"terms": map[string]any{"type": f.Types}})
	}
	// date_nanos holds 1970-01-01 to 2262-04-11: clamp the bounds into that range, where a
	// bound outside it either selects everything on that side or nothing at all.
	rng := map[string]any{}
	if !f.From.IsZero() {
		if f.From.After(maxNanos) {
			return nil, true
		}
		if f.From.After(minNanos) {
			rng["gte"] = f.From.UTC().Format(time.RFC3339Nano)
		}
	}
	if !f.To.IsZero() {
		if !f.To.After(minNanos) {
			return nil, true
		}
		if !f.To.After(maxNanos) {
			rng["lt"] = f.To.UTC().Format(time.RFC3339Nano)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, true
	}
	if len(rng) > 0 {
		clauses = append(clauses, map[string]any{"range": map[string]any{"@timestamp": rng}})
	}
	return clauses, false
}

// Page returns up to q.Size events matching q.Filter in (@timestamp, id) order, ascending or
// descending, strictly after q.After. The last event's Position is the After of the next page.
func (s *Store) Page(ctx context.Context, q event.PageQuery) ([]event.Event, error) {
	if len(q.ClientIDs) == 0 || q.Size < 1 {
		return nil, fmt.Errorf("page query: %w: clientIds and a positive size are required", event.ErrInvalid)
	}
	clauses, empty := filterClauses(q.Filter)
	if empty {
		return nil, nil
	}
	order := "asc"
	if q.Desc {
		order = "desc"
	}
	body := map[string]any{
		"size":             q.Size,
		"track_total_hits": false,
		"query":            map[string]any{"bool": map[string]any{"filter": clauses}},
		"sort":             []any{map[string]any{"@timestamp": order}, map[string]any{"id": order}},
	}
	if q.After != nil {
		// date_nanos sort values are epoch nanoseconds.
		body["search_after"] = []any{q.After.Timestamp.UnixNano(), q.After.ID}
	}
	var out struct {
		Hits struct {
			Hits []struct {
				Source doc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	// A page that silently lacks a failed shard's events would break completeness: fail instead.
	// Only the documents are decoded (errors are not filtered): an event's Position is its sort
	// key, both stores holding timestamps at microseconds.
	if err := s.search(ctx, s.Alias(), body, &out, s.es.Search.WithAllowPartialSearchResults(false),
		s.es.Search.WithFilterPath("hits.hits._source")); err != nil {
		return nil, err
	}
	events := make([]event.Event, len(out.Hits.Hits))
	for i, h := range out.Hits.Hits {
		events[i] = h.Source.event()
	}
	return events, nil
}

// Count returns the exact number of events matching f (the _count API counts every match,
// unlike a search's total, which stops at 10,000 by default).
func (s *Store) Count(ctx context.Context, f event.Filter) (int64, error) {
	if len(f.ClientIDs) == 0 {
		return 0, fmt.Errorf("count: %w: clientIds are required", event.ErrInvalid)
	}
	clauses, empty := filterClauses(f)
	if empty {
		return 0, nil
	}
	b, err := json.Marshal(map[string]any{"query": map[string]any{"bool": map[string]any{"filter": clauses}}})
	if err != nil {
		return 0, err
	}
	res, err := s.es.Count(
		s.es.Count.WithContext(ctx),
		s.es.Count.WithIndex(s.Alias()),
		s.es.Count.WithBody(bytes.NewReader(b)),
		s.es.Count.WithIgnoreUnavailable(true),
		s.es.Count.WithAllowNoIndices(true),
	)
	var out struct {
		Count  int64 `json:"count"`
		Shards struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"_shards"`
	}
	if err := decode(res, err, "count", &out); err != nil {
		return 0, err
	}
	// _count has no allow_partial_search_results: a count missing a shard is not exact.
	if out.Shards.Failed > 0 {
		return 0, fmt.Errorf("count: %d of %d shards failed: %w", out.Shards.Failed, out.Shards.Total, event.ErrUnavailable)
	}
	return out.Count, nil
}

// IndexUUIDs returns the UUID of every event index that exists, open or closed, healthy or not,
// read from the cluster metadata. Shard statistics omit an index whose shards cannot answer;
// a reader that took that for a deletion would forget its position there and, once the index
// is back, read its events again.
func (s *Store) IndexUUIDs(ctx context.Context) (map[string]bool, error) {
	res, err := s.es.Indices.GetSettings(
		s.es.Indices.GetSettings.WithIndex(s.Pattern()),
		s.es.Indices.GetSettings.WithName("index.uuid"),
		s.es.Indices.GetSettings.WithFlatSettings(true),
		s.es.Indices.GetSettings.WithExpandWildcards("all"),
		s.es.Indices.GetSettings.WithAllowNoIndices(true),
		s.es.Indices.GetSettings.WithFilterPath("*.settings"),
		s.es.Indices.GetSettings.WithContext(ctx),
	)
	var out map[string]struct {
		Settings map[string]string `json:"settings"`
	}
	if err := decode(res, err, "index uuids", &out); err != nil {
		return nil, err
	}
	uuids := make(map[string]bool, len(out))
	for name, idx := range out {
		u := idx.Settings["index.uuid"]
		if u == "" {
			return nil, fmt.Errorf("index uuids: no uuid for %s", name)
		}
		uuids[u] = true
	}
	return uuids, nil
}
