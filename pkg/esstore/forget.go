package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Erasure of one client's events (archiver forget). The test distribution, like many managed
// clusters, offers no delete-by-query: the documents are found with a point in time and deleted
// by index and id in bulk requests.

// CountClient counts the visible documents of one client in every event index.
func (s *Store) CountClient(ctx context.Context, clientID string) (int64, error) {
	body, _ := json.Marshal(map[string]any{"query": clientFilter(clientID)})
	res, err := s.es.Count(s.es.Count.WithIndex(s.Pattern()), s.es.Count.WithBody(bytes.NewReader(body)),
		s.es.Count.WithAllowNoIndices(true), s.es.Count.WithContext(ctx))
	var out struct {
		Count int64 `json:"count"`
	}
	if err := decode(res, err, "count client", &out); err != nil {
		return 0, err
	}
	return out.Count, nil
}

func clientFilter(clientID string) map[string]any {
	return map[string]any{"bool": map[string]any{"filter": []any{map[string]any{"term": map[string]any{"clientId": clientID}}}}}
}

// ClientDocs calls fn with the references of one client's documents, in pages of size, from one
// point-in-time snapshot of every event index.
func (s *Store) ClientDocs(ctx context.Context, clientID string, size int, fn func([]event.DocRef) error) error {
	const keepAlive = "2m"
	res, err := s.es.OpenPointInTime([]string{s.Pattern()}, keepAlive, s.es.OpenPointInTime.WithContext(ctx),
		s.es.OpenPointInTime.WithIgnoreUnavailable(true))
	var pit struct {
		ID string `json:"id"`
	}
	if err := decode(res, err, "open point in time", &pit); err != nil {
		return err
	}
	defer s.closePIT(pit.ID)
	var after []json.RawMessage
	for {
		body := map[string]any{
			"size":             size,
			"track_total_hits": false,
			"_source":          false,
			"query":            clientFilter(clientID),
			"pit":              map[string]any{"id": pit.ID, "keep_alive": keepAlive},
			"sort":             []any{map[string]any{"_shard_doc": "asc"}},
		}
		if after != nil {
			body["search_after"] = after
		}
		var out searchResponse
		if err := s.pitSearch(ctx, "client documents", body, &out); err != nil {
			return err
		}
		if out.PitID != "" {
			pit.ID = out.PitID
		}
		if len(out.Hits.Hits) == 0 {
			return nil
		}
		refs := make([]event.DocRef, len(out.Hits.Hits))
		for i, h := range out.Hits.Hits {
			refs[i] = event.DocRef{Index: h.Index, ID: h.ID}
		}
		after = out.Hits.Hits[len(out.Hits.Hits)-1].Sort
		if err := fn(refs); err != nil {
			return err
		}
		if len(out.Hits.Hits) < size {
			return nil
		}
	}
}

func (s *Store) closePIT(id string) {
	b, _ := json.Marshal(map[string]string{"id": id})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.es.ClosePointInTime(s.es.ClosePointInTime.WithBody(bytes.NewReader(b)), s.es.ClosePointInTime.WithContext(ctx))
	if err := check(res, err, "close point in time"); err != nil {
		s.logger.Warn("close point in time", "err", err)
	}
}

// DeleteDocs deletes documents by index and id in one bulk request and returns how many were
// deleted (a document already gone counts as not found, not as an error). Only this prefix's
// daily indices are accepted.
func (s *Store) DeleteDocs(ctx context.Context, refs []event.DocRef) (deleted int, err error) {
	if len(refs) == 0 {
		return 0, nil
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, r := range refs {
		if _, ok := s.DayOf(r.Index); !ok {
			return 0, fmt.Errorf("delete documents: %q is not an event index of prefix %q", r.Index, s.Prefix())
		}
		if err := enc.Encode(map[string]any{"delete": map[string]string{"_index": r.Index, "_id": r.ID}}); err != nil {
			return 0, err
		}
	}
	res, err := s.es.Bulk(bytes.NewReader(body.Bytes()), s.es.Bulk.WithContext(ctx))
	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := decode(res, err, "delete documents", &out); err != nil {
		return 0, err
	}
	for _, item := range out.Items {
		for _, r := range item {
			switch {
			case r.Status == 200:
				deleted++
			case r.Status == 404:
			case r.Error != nil:
				return deleted, &StatusError{Op: "delete documents", Status: r.Status, Type: r.Error.Type, Reason: r.Error.Reason}
			default:
				return deleted, &StatusError{Op: "delete documents", Status: r.Status}
			}
		}
	}
	return deleted, nil
}
