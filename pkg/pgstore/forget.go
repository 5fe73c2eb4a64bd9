package pgstore

import (
	"context"
	"time"
)

// Erasures: `archiver forget` removes a client's events and records it in archive_erasures.

// CountClient counts one client's archived events.
func (s *Store) CountClient(ctx context.Context, clientID string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events_all WHERE client_id = $1`, clientID).Scan(&n); err != nil {
		return 0, wrap("count client", err)
	}
	return n, nil
}

// DeleteClient deletes one client's archived events from every day partition (and from a
// version-1 table still being migrated) and returns how many.
func (s *Store) DeleteClient(ctx context.Context, clientID string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE client_id = $1`, clientID)
	if err != nil {
		return 0, wrap("delete client", err)
	}
	n := tag.RowsAffected()
	var v1 bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('events_v1') IS NOT NULL`).Scan(&v1); err != nil {
		return n, wrap("delete client", err)
	}
	if v1 {
		tag, err := s.pool.Exec(ctx, `DELETE FROM events_v1 WHERE client_id = $1`, clientID)
		if err != nil {
			return n, wrap("delete client", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

// Erasure is one recorded `archiver forget`.
type Erasure struct {
	ID          int64
	ClientID    string
	RequestedBy string
	StartedAt   time.Time
	FinishedAt  time.Time // zero: not finished (interrupted; run it again)
	ESDeleted   int64
	PGDeleted   int64
}

// StartErasure records that an erasure of clientID began.
func (s *Store) StartErasure(ctx context.Context, clientID, by string) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO archive_erasures (client_id, requested_by) VALUES ($1, $2) RETURNING id`,
		clientID, by).Scan(&id); err != nil {
		return 0, wrap("record erasure", err)
	}
	return id, nil
}

// FinishErasure records an erasure's counts and end.
func (s *Store) FinishErasure(ctx context.Context, id, esDeleted, pgDeleted int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE archive_erasures SET finished_at = now(), es_deleted = $2, pg_deleted = $3 WHERE id = $1`,
		id, esDeleted, pgDeleted); err != nil {
		return wrap("record erasure", err)
	}
	return nil
}

// Erasures lists the recorded erasures, oldest first.
func (s *Store) Erasures(ctx context.Context) ([]Erasure, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, client_id, requested_by, started_at, finished_at, es_deleted, pg_deleted
		FROM archive_erasures ORDER BY id`)
	if err != nil {
		return nil, wrap("erasures", err)
	}
	defer rows.Close()
	var out []Erasure
	for rows.Next() {
		var e Erasure
		var fin *time.Time
		if err := rows.Scan(&e.ID, &e.ClientID, &e.RequestedBy, &e.StartedAt, &fin, &e.ESDeleted, &e.PGDeleted); err != nil {
			return nil, wrap("erasures", err)
		}
		e.StartedAt = e.StartedAt.UTC()
		if fin != nil {
			e.FinishedAt = fin.UTC()
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("erasures", err)
	}
	return out, nil
}
