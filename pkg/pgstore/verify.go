package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Range is the half-open time interval [From, To) of event timestamps.
type Range struct{ From, To time.Time }

// CountRanges counts the events whose ts falls in each range (one count per range, in order).
// Each range is one scan of the (ts, id) index.
func (s *Store) CountRanges(ctx context.Context, ranges []Range) ([]int64, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	lo := make([]time.Time, len(ranges))
	hi := make([]time.Time, len(ranges))
	for i, r := range ranges {
		lo[i], hi[i] = r.From, r.To
	}
	rows, err := s.pool.Query(ctx, `SELECT r.i, (SELECT count(*) FROM events e WHERE e.ts >= r.lo AND e.ts < r.hi)
		FROM unnest($1::timestamptz[], $2::timestamptz[]) WITH ORDINALITY AS r(lo, hi, i)`, lo, hi)
	if err != nil {
		return nil, wrap("count ranges", err)
	}
	out := make([]int64, len(ranges))
	defer rows.Close()
	for rows.Next() {
		var i, n int64
		if err := rows.Scan(&i, &n); err != nil {
			return nil, wrap("count ranges", err)
		}
		out[i-1] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count ranges", err)
	}
	return out, nil
}

// ErrTooMany means a range holds more ids than the caller's limit.
var ErrTooMany = errors.New("too many ids in range")

// IDsInRange returns the ids of the events whose ts falls in r, in byte order, or ErrTooMany
// when there are more than limit.
func (s *Store) IDsInRange(ctx context.Context, r Range, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM events WHERE ts >= $1 AND ts < $2 ORDER BY id LIMIT $3`, r.From, r.To, limit+1)
	if err != nil {
		return nil, wrap("ids in range", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("ids in range", err)
	}
	if len(ids) > limit {
		return nil, fmt.Errorf("ids in range: %w (more than %d)", ErrTooMany, limit)
	}
	return ids, nil
}
