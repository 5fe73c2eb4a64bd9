package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/pkg/event"
)

// RangeCount counts one range's events.
type RangeCount struct {
	N    int64 // events whose ts falls in the range
	Hash int64 // the sum of their event.IDHash
}

// CountRanges counts the events whose ts falls in each range and sums their id digests (one
// RangeCount per range, in order). Both come from index-only scans of the (ts, id) index of the
// day partitions the ranges touch, and of no other partition (see countRangesQuery).
func (s *Store) CountRanges(ctx context.Context, ranges []event.Range) ([]RangeCount, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	sql, args := countRangesQuery(ranges)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap("count ranges", err)
	}
	out := make([]RangeCount, len(ranges))
	defer rows.Close()
	for rows.Next() {
		var i int64
		var c RangeCount
		if err := rows.Scan(&i, &c.N, &c.Hash); err != nil {
			return nil, wrap("count ranges", err)
		}
		out[i-1] = c
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count ranges", err)
	}
	return out, nil
}

// countRangesQuery is CountRanges' statement. Besides each range's own bounds (parameters of the
// lateral join, known only row by row) it bounds ts by the ranges' hull ($3, $4): top-level
// parameters the planner prunes partitions with, so verifying one day reads one partition.
func countRangesQuery(ranges []event.Range) (string, []any) {
	lo := make([]time.Time, len(ranges))
	hi := make([]time.Time, len(ranges))
	hull := ranges[0]
	for i, r := range ranges {
		lo[i], hi[i] = r.From, r.To
		if r.From.Before(hull.From) {
			hull.From = r.From
		}
		if r.To.After(hull.To) {
			hull.To = r.To
		}
	}
	return `SELECT r.i, c.n, c.h FROM unnest($1::timestamptz[], $2::timestamptz[]) WITH ORDINALITY AS r(lo, hi, i)
		CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(` + event.IDHashSQL + `), 0)::bigint AS h
			FROM events_all e WHERE e.ts >= $3 AND e.ts < $4 AND e.ts >= r.lo AND e.ts < r.hi) c`,
		[]any{lo, hi, hull.From, hull.To}
}

// IDsInRange returns the ids of the events whose ts falls in r, in byte order, or event.ErrTooMany
// when there are more than limit. Within one UTC day ids are unique (the archive's identity is
// (id, day)); a range across midnight may list an id once per day.
func (s *Store) IDsInRange(ctx context.Context, r event.Range, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM events_all WHERE ts >= $1 AND ts < $2 ORDER BY id LIMIT $3`, r.From, r.To, limit+1)
	if err != nil {
		return nil, wrap("ids in range", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("ids in range", err)
	}
	if len(ids) > limit {
		return nil, fmt.Errorf("ids in range: %w (more than %d)", event.ErrTooMany, limit)
	}
	return ids, nil
}
