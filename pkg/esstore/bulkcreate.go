package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spillway/spillway/pkg/event"
)

// BulkCreate writes events with op_type=create into their daily indices in one _bulk request,
// without waiting for a refresh. created counts new documents, conflicts the ids that already
// existed; any other item failure is an error. It is for tools, tests and load generation; the
// ingest service has its own bulk indexer.
func (s *Store) BulkCreate(ctx context.Context, events []event.Event) (created, conflicts int, err error) {
	if len(events) == 0 {
		return 0, 0, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range events {
		meta := map[string]any{"create": map[string]any{"_index": s.IndexFor(e.Timestamp), "_id": e.ID}}
		if err := enc.Encode(meta); err != nil {
			return 0, 0, err
		}
		if err := enc.Encode(ToDoc(e)); err != nil {
			return 0, 0, fmt.Errorf("event %s: %w", e.ID, err)
		}
	}
	res, err := s.es.Bulk(bytes.NewReader(buf.Bytes()), s.es.Bulk.WithContext(ctx))
	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			ID     string `json:"_id"`
			Status int    `json:"status"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := decode(res, err, "bulk", &out); err != nil {
		return 0, 0, err
	}
	var firstErr error
	for _, item := range out.Items {
		for _, r := range item {
			switch {
			case r.Status == 201:
				created++
			case r.Status == 409:
				conflicts++
			case firstErr == nil:
				se := &StatusError{Op: "bulk item " + r.ID, Status: r.Status}
				if r.Error != nil {
					se.Type, se.Reason = r.Error.Type, r.Error.Reason
				}
				firstErr = se
			}
		}
	}
	return created, conflicts, firstErr
}
