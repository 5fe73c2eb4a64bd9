package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/pkg/event"
)

// Moving a version-1 archive (one unpartitioned events table with PRIMARY KEY (id)) into the day
// partitions. Migration 004 renamed that table events_v1 and made readers use events_all: the
// partitions plus the rows of events_v1 after a position in (ts, id) order. MoveV1 copies the
// next rows after the position and moves the position in the same statement, so every row is
// readable exactly once at any moment and a killed move resumes where it committed. The archiver
// writes into the partitions meanwhile, skipping an (id, day) still waiting in events_v1.

// V1State is the progress of a version-1 archive's move.
type V1State struct {
	// MovedTS and MovedID are the position: rows up to it (in (ts, id) order) are moved. A
	// zero MovedTS: nothing moved yet.
	MovedTS   time.Time
	MovedID   string
	RowsMoved int64
	// RowsLeft estimates the rows after the position (planner statistics; exact when small).
	RowsLeft  int64
	StartedAt time.Time
	UpdatedAt time.Time
}

// V1 returns the state of the version-1 move; ok is false when there is no version-1 table
// (never was, or its move finished).
func (s *Store) V1(ctx context.Context) (st V1State, ok bool, err error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('events_v1') IS NOT NULL`).Scan(&exists); err != nil {
		return st, false, wrap("v1 state", err)
	}
	if !exists {
		return st, false, nil
	}
	var moved *time.Time
	err = s.pool.QueryRow(ctx, `SELECT nullif(moved_ts, '-infinity'), moved_id, rows_moved, started_at, updated_at,
			greatest((SELECT reltuples::bigint FROM pg_class WHERE oid = 'events_v1'::regclass) - rows_moved, 0)
		FROM archive_v1_migration`).Scan(&moved, &st.MovedID, &st.RowsMoved, &st.StartedAt, &st.UpdatedAt, &st.RowsLeft)
	if err != nil {
		return st, false, wrap("v1 state", err)
	}
	if moved != nil {
		st.MovedTS = *moved
	}
	if st.RowsLeft < 100000 {
		// Statistics may be stale or absent (-1 before the first ANALYZE); small counts are cheap.
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events_v1 v, archive_v1_migration m
			WHERE (v.ts, v.id) > (m.moved_ts, m.moved_id)`).Scan(&st.RowsLeft); err != nil {
			return st, false, wrap("v1 state", err)
		}
	}
	st.MovedTS, st.StartedAt, st.UpdatedAt = st.MovedTS.UTC(), st.StartedAt.UTC(), st.UpdatedAt.UTC()
	return st, true, nil
}

// MoveV1 copies up to n rows of events_v1 after the position into the partitions, creating the
// partitions they need, and moves the position past them, atomically. It returns the rows moved
// (0: nothing left) and how many of them were new to the partitions (the others' (id, day) was
// there already; a clean version-1 table has none).
func (s *Store) MoveV1(ctx context.Context, n int) (moved, inserted int64, err error) {
	if n < 1 {
		return 0, 0, fmt.Errorf("move v1: batch of %d rows", n)
	}
	// The days of the next batch, for their partitions. Only one mover runs at a time (the lock
	// below); if the position moved anyway, a missing partition fails the statement, nothing is
	// written, and the next call looks again.
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT date_trunc('day', x.ts, 'UTC') FROM (
			SELECT v.ts FROM events_v1 v, archive_v1_migration m WHERE (v.ts, v.id) > (m.moved_ts, m.moved_id)
			ORDER BY v.ts, v.id LIMIT $1) x`, n)
	if err != nil {
		return 0, 0, wrap("move v1", err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return 0, 0, wrap("move v1", err)
	}
	if len(days) == 0 {
		return 0, 0, nil
	}
	if err := s.EnsurePartitions(ctx, days...); err != nil {
		return 0, 0, fmt.Errorf("move v1: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", AdvisoryKey("spillway-v1-move:"+s.cfg.Schema)); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `WITH m AS (SELECT moved_ts, moved_id FROM archive_v1_migration FOR UPDATE),
			batch AS MATERIALIZED (
				SELECT v.id, v.client_id, v.type, v.ts, v.ingested_at, v.payload FROM events_v1 v, m
				WHERE (v.ts, v.id) > (m.moved_ts, m.moved_id) ORDER BY v.ts, v.id LIMIT $1),
			ins AS (INSERT INTO events (id, client_id, type, ts, ingested_at, payload)
				SELECT id, client_id, type, ts, ingested_at, payload FROM batch ON CONFLICT DO NOTHING RETURNING 1),
			last AS (SELECT ts, id FROM batch ORDER BY ts DESC, id DESC LIMIT 1),
			upd AS (UPDATE archive_v1_migration SET moved_ts = last.ts, moved_id = last.id,
				rows_moved = rows_moved + (SELECT count(*) FROM batch), updated_at = now() FROM last RETURNING 1)
			SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM ins), (SELECT count(*) FROM upd)`, n).Scan(&moved, &inserted, new(int64))
		return err
	})
	if err != nil {
		s.forgetOnMissing(err)
		return 0, 0, wrap("move v1", err)
	}
	return moved, inserted, nil
}

// V1Day compares one UTC day of events_v1 with the partitions: the day's rows in events_v1 and
// those of them found in the partitions (same id and timestamp), each as a count and a sum of
// id digests (event.IDHash).
type V1Day struct {
	Day                  time.Time
	V1Rows, V1Hash       int64
	MovedRows, MovedHash int64
}

// OK says every row of the day is in the partitions.
func (d V1Day) OK() bool { return d.V1Rows == d.MovedRows && d.V1Hash == d.MovedHash }

// V1Days lists the UTC days that events_v1 holds rows of, oldest first.
func (s *Store) V1Days(ctx context.Context) ([]time.Time, error) {
	// A loose index scan over events_v1_ts_id: one probe per day, not a pass over every row.
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE d(day) AS (
			SELECT date_trunc('day', min(ts), 'UTC') FROM events_v1
			UNION ALL
			SELECT (SELECT date_trunc('day', min(ts), 'UTC') FROM events_v1 WHERE ts >= d.day + interval '1 day')
			FROM d WHERE d.day IS NOT NULL)
		SELECT day FROM d WHERE day IS NOT NULL`)
	if err != nil {
		return nil, wrap("v1 days", err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, wrap("v1 days", err)
	}
	for i := range days {
		days[i] = days[i].UTC()
	}
	return days, nil
}

// CompareV1Day counts one day of events_v1 and its rows found in the partitions.
func (s *Store) CompareV1Day(ctx context.Context, day time.Time) (V1Day, error) {
	d := V1Day{Day: Day(day)}
	from, to := d.Day, d.Day.Add(24*time.Hour)
	hash := `coalesce(sum(` + event.IDHashSQLOf("v.id") + `), 0)::bigint`
	err := s.pool.QueryRow(ctx, `SELECT count(*), `+hash+` FROM events_v1 v WHERE v.ts >= $1 AND v.ts < $2`, from, to).
		Scan(&d.V1Rows, &d.V1Hash)
	if err != nil {
		return d, wrap("compare v1 day", err)
	}
	err = s.pool.QueryRow(ctx, `SELECT count(*), `+hash+` FROM events_v1 v JOIN events e ON e.id = v.id AND e.ts = v.ts
		WHERE v.ts >= $1 AND v.ts < $2 AND e.ts >= $1 AND e.ts < $2`, from, to).Scan(&d.MovedRows, &d.MovedHash)
	if err != nil {
		return d, wrap("compare v1 day", err)
	}
	return d, nil
}

// ErrV1NotMoved means rows of events_v1 are not in the partitions yet.
var ErrV1NotMoved = errors.New("version-1 rows not moved yet")

// FinishV1 ends the move: it checks that no row of events_v1 is left after the position, points
// events_all at the partitions alone and drops events_v1, in one transaction. The caller verifies
// every day first (CompareV1Day); this only refuses to drop rows that were never moved.
func (s *Store) FinishV1(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", AdvisoryKey("spillway-v1-move:"+s.cfg.Schema)); err != nil {
			return err
		}
		var left bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events_v1 v, archive_v1_migration m
			WHERE (v.ts, v.id) > (m.moved_ts, m.moved_id))`).Scan(&left); err != nil {
			return err
		}
		if left {
			return ErrV1NotMoved
		}
		for _, stmt := range []string{
			`CREATE OR REPLACE VIEW events_all AS SELECT id, client_id, type, ts, ingested_at, payload FROM events`,
			`DROP TABLE events_v1`,
			`DROP TABLE archive_v1_migration`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrV1NotMoved) {
		return fmt.Errorf("finish v1: %w", err)
	}
	if err != nil {
		return wrap("finish v1", err)
	}
	return nil
}
