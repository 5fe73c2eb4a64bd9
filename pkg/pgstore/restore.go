package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Restores: the archive found behind Elasticsearch's retention log (archive_restores).

// LostDay is one deleted day of which the archive lacks events.
type LostDay struct {
	Day      time.Time `json:"day"`
	Logged   int64     `json:"logged"`   // events the day held when retention deleted its index
	Archived int64     `json:"archived"` // events of the day the archive holds now
}

// Restore is one detection of the archive behind the retention log.
type Restore struct {
	ID             int64
	DetectedAt     time.Time
	BoundaryFound  time.Time // zero: none recorded
	DroppedThrough time.Time
	RepairedAt     time.Time // zero: not repaired yet
	EventsLost     int64
	DaysLost       []LostDay
}

// OpenRestore returns the unrepaired restore record for droppedThrough, creating it (with the
// boundary found) if there is none.
func (s *Store) OpenRestore(ctx context.Context, found, droppedThrough time.Time) (Restore, error) {
	var b *time.Time
	if !found.IsZero() {
		b = &found
	}
	var r Restore
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", AdvisoryKey("spillway-restore:"+s.cfg.Schema)); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT id, detected_at FROM archive_restores WHERE repaired_at IS NULL AND dropped_through = $1
			ORDER BY id LIMIT 1`, droppedThrough).Scan(&r.ID, &r.DetectedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `INSERT INTO archive_restores (boundary_found, dropped_through) VALUES ($1, $2) RETURNING id, detected_at`,
				b, droppedThrough).Scan(&r.ID, &r.DetectedAt)
		}
		return err
	})
	if err != nil {
		return r, wrap("record restore", err)
	}
	r.BoundaryFound, r.DroppedThrough, r.DetectedAt = found, droppedThrough, r.DetectedAt.UTC()
	return r, nil
}

// CloseRestore records a restore as repaired, with what it could not bring back.
func (s *Store) CloseRestore(ctx context.Context, id int64, lost []LostDay) error {
	var n int64
	for _, d := range lost {
		n += d.Logged - d.Archived
	}
	days, err := json.Marshal(lost)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE archive_restores SET repaired_at = now(), events_lost = $2, days_lost = $3 WHERE id = $1`,
		id, n, days); err != nil {
		return wrap("record restore", err)
	}
	return nil
}

// Restores lists the recorded restores, oldest first.
func (s *Store) Restores(ctx context.Context) ([]Restore, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, detected_at, boundary_found, dropped_through, repaired_at, coalesce(events_lost, 0), days_lost
		FROM archive_restores ORDER BY id`)
	if err != nil {
		return nil, wrap("restores", err)
	}
	defer rows.Close()
	var out []Restore
	for rows.Next() {
		var r Restore
		var found, repaired *time.Time
		var days []byte
		if err := rows.Scan(&r.ID, &r.DetectedAt, &found, &r.DroppedThrough, &repaired, &r.EventsLost, &days); err != nil {
			return nil, wrap("restores", err)
		}
		r.DetectedAt, r.DroppedThrough = r.DetectedAt.UTC(), r.DroppedThrough.UTC()
		if found != nil {
			r.BoundaryFound = found.UTC()
		}
		if repaired != nil {
			r.RepairedAt = repaired.UTC()
		}
		if len(days) > 0 {
			if err := json.Unmarshal(days, &r.DaysLost); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("restores", err)
	}
	return out, nil
}
