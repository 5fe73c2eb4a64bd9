package esstore

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/spillway/spillway/pkg/event"
)

// Indices lists the daily event indices of this prefix, oldest day first, including closed and
// red ones (retention must see an index whose shards cannot answer, not take it for absent).
// Names under the pattern that are not <prefix>-YYYY.MM.DD are ignored.
func (s *Store) Indices(ctx context.Context) ([]event.DailyIndex, error) {
	res, err := s.es.Cat.Indices(
		s.es.Cat.Indices.WithIndex(s.Pattern()),
		s.es.Cat.Indices.WithExpandWildcards("all"),
		s.es.Cat.Indices.WithFormat("json"),
		s.es.Cat.Indices.WithH("index", "uuid", "status", "health", "pri", "docs.count"),
		s.es.Cat.Indices.WithContext(ctx),
	)
	var rows []struct {
		Index  string  `json:"index"`
		UUID   string  `json:"uuid"`
		Status string  `json:"status"`
		Health string  `json:"health"`
		Pri    string  `json:"pri"`
		Docs   *string `json:"docs.count"`
	}
	if err := decode(res, err, "list indices", &rows); err != nil {
		return nil, err
	}
	out := make([]event.DailyIndex, 0, len(rows))
	for _, r := range rows {
		day, ok := s.DayOf(r.Index)
		if !ok {
			continue
		}
		idx := event.DailyIndex{Name: r.Index, UUID: r.UUID, Day: day, Open: r.Status == "open", Health: r.Health, Docs: -1}
		idx.Primaries, _ = strconv.Atoi(r.Pri)
		if r.Docs != nil {
			if n, err := strconv.ParseInt(*r.Docs, 10, 64); err == nil {
				idx.Docs = n
			}
		}
		out = append(out, idx)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Day.Before(out[j].Day) })
	return out, nil
}

// DeleteIndex deletes one daily event index by its exact name; an index already gone is not an
// error. Anything that is not one of this prefix's daily index names is refused, so no pattern
// or other index can ever be deleted through it.
func (s *Store) DeleteIndex(ctx context.Context, name string) error {
	if _, ok := s.DayOf(name); !ok || strings.ContainsAny(name, "*?,/ ") {
		return fmt.Errorf("delete index: %q is not an event index of prefix %q", name, s.Prefix())
	}
	res, err := s.es.Indices.Delete([]string{name},
		s.es.Indices.Delete.WithExpandWildcards("none"),
		s.es.Indices.Delete.WithContext(ctx))
	if err == nil && res.StatusCode == http.StatusNotFound {
		res.Body.Close()
		return nil
	}
	return check(res, err, "delete index "+name)
}
