package pgstore

import (
	"context"
	"fmt"
	"time"
)

// The cold boundary (mappings/postgres/003_cold_boundary.sql) splits the history of one index
// prefix between the tiers: events with a @timestamp below it are served from the events table,
// the rest from Elasticsearch. Retention writes it, search reads it.

// ColdBoundary returns the prefix's boundary; ok is false when none was ever recorded (nothing
// has been dropped from Elasticsearch). A missing table is an error, not "no boundary": a search
// pointed at the wrong schema must not conclude that Elasticsearch still holds everything.
//
// A schema that archives another prefix (ClaimPrefix) is an *OtherPrefixError: its boundary and
// rows are not this prefix's.
func (s *Store) ColdBoundary(ctx context.Context, prefix string) (boundary time.Time, ok bool, err error) {
	var b *time.Time
	var owner *string
	err = s.pool.QueryRow(ctx, `SELECT (SELECT index_prefix FROM archive_owner),
		(SELECT boundary FROM cold_boundary WHERE index_prefix = $1)`, prefix).Scan(&owner, &b)
	if err != nil {
		return time.Time{}, false, wrap("read cold boundary", err)
	}
	if owner != nil && *owner != prefix {
		return time.Time{}, false, &OtherPrefixError{Schema: s.cfg.Schema, Owner: *owner, Prefix: prefix}
	}
	if b == nil {
		return time.Time{}, false, nil
	}
	return b.UTC(), true, nil
}

// AdvanceColdBoundary moves the prefix's boundary forward to `to` and returns the boundary now
// recorded. It never moves it back: an earlier `to` leaves the recorded value, and the caller
// sees which one holds. Concurrent calls are safe (one upsert; the row lock orders them).
func (s *Store) AdvanceColdBoundary(ctx context.Context, prefix string, to time.Time) (time.Time, error) {
	if to.IsZero() {
		return time.Time{}, fmt.Errorf("advance cold boundary: zero time")
	}
	var b time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO cold_boundary AS c (index_prefix, boundary) VALUES ($1, $2)
		ON CONFLICT (index_prefix) DO UPDATE
		SET boundary = GREATEST(c.boundary, EXCLUDED.boundary),
		    updated_at = CASE WHEN EXCLUDED.boundary > c.boundary THEN now() ELSE c.updated_at END
		RETURNING boundary`, prefix, to.UTC()).Scan(&b)
	if err != nil {
		return time.Time{}, wrap("advance cold boundary", err)
	}
	return b.UTC(), nil
}
