package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// The retention log: one document per daily index that retention deleted, written before the
// deletion, in the index <prefix>.retention (outside the <prefix>-* pattern, so no reader of
// events sees it). It is the record of what PostgreSQL alone holds, kept outside PostgreSQL: when
// the archive comes back from a backup taken before a retention pass, its cold boundary is behind
// what was dropped, and the log says so (and how many events each dropped day held).

// RetentionLog names the retention log index.
func (s *Store) RetentionLog() string { return s.cfg.IndexPrefix + ".retention" }

// retentionLogVersion is the retention log template's _meta.template_version: raise it with
// every change to the template below.
const retentionLogVersion = 1

// retentionLogTemplate is the log's composable template (installed with the event template by
// InstallTemplate): the first record auto-creates the index with this strict mapping, so the
// archiver needs only to create the index and write to it.
func (s *Store) retentionLogTemplate() []byte {
	body, _ := json.Marshal(map[string]any{
		"index_patterns": []string{s.RetentionLog()},
		"priority":       200,
		"template": map[string]any{
			"settings": map[string]any{"index": map[string]any{"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
			"mappings": map[string]any{"dynamic": "strict", "properties": map[string]any{
				"index": map[string]string{"type": "keyword"}, "day": map[string]string{"type": "date"},
				"docs": map[string]string{"type": "long"}, "idHash": map[string]string{"type": "long"},
				"boundary": map[string]string{"type": "date"}, "deletedAt": map[string]string{"type": "date"}}},
		},
		"_meta": map[string]any{"managed_by": "spillway", "template_version": retentionLogVersion,
			"description": "Spillway: the daily event indices retention deleted (archive/restore.go)"},
	})
	return body
}

// LogDrop records a drop (before the index is deleted); the first record creates the log. It
// returns once the record is durable and searchable. Recording a day again replaces its record.
func (s *Store) LogDrop(ctx context.Context, d event.Drop) error {
	body, err := json.Marshal(d)
	if err != nil {
		return err
	}
	res, err := s.es.Index(s.RetentionLog(), bytes.NewReader(body), s.es.Index.WithDocumentID(d.Day.UTC().Format(time.DateOnly)),
		s.es.Index.WithRefresh("wait_for"), s.es.Index.WithContext(ctx))
	return check(res, err, "log drop")
}

// Drops lists the recorded drops, oldest day first (none when the log does not exist).
func (s *Store) Drops(ctx context.Context) ([]event.Drop, error) {
	var out struct {
		Hits struct {
			Hits []struct {
				Source event.Drop `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	// A day of drops per document: ten thousand cover 27 years of daily retention.
	body := map[string]any{"size": 10000, "sort": []any{map[string]any{"day": "asc"}}, "track_total_hits": false}
	if err := s.search(ctx, s.RetentionLog(), body, &out); err != nil {
		return nil, fmt.Errorf("retention log: %w", err)
	}
	drops := make([]event.Drop, len(out.Hits.Hits))
	for i, h := range out.Hits.Hits {
		drops[i] = h.Source
		drops[i].Day, drops[i].Boundary, drops[i].DeletedAt = drops[i].Day.UTC(), drops[i].Boundary.UTC(), drops[i].DeletedAt.UTC()
	}
	return drops, nil
}

// DroppedThrough returns the end of the newest day retention recorded as deleted: every instant
// below it is served from PostgreSQL alone. ok is false when nothing was ever dropped.
func (s *Store) DroppedThrough(ctx context.Context) (through time.Time, ok bool, err error) {
	var out struct {
		Aggregations struct {
			Last struct {
				Value *float64 `json:"value"`
			} `json:"last"`
		} `json:"aggregations"`
	}
	body := map[string]any{"size": 0, "aggs": map[string]any{"last": map[string]any{"max": map[string]any{"field": "day"}}}}
	if err := s.search(ctx, s.RetentionLog(), body, &out); err != nil {
		return time.Time{}, false, fmt.Errorf("retention log: %w", err)
	}
	if out.Aggregations.Last.Value == nil {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(*out.Aggregations.Last.Value)).UTC().Add(24 * time.Hour), true, nil
}
