package pgstore

import (
	"context"
	"time"
)

// State is the archive's bookkeeping besides the checkpoints.
type State struct {
	RowsRepaired   int64
	RowsBackfilled int64
	LastError      string
	LastErrorAt    time.Time // zero when no error was recorded
	LastVerify     *VerifyRecord
}

// VerifyRecord is the outcome of the latest verification.
type VerifyRecord struct {
	At       time.Time
	From, To time.Time
	Missing  int64
	Extra    int64
	Pending  int64
	Repaired int64
}

// State reads the bookkeeping row.
func (s *Store) State(ctx context.Context) (State, error) {
	var st State
	var lastErr *string
	var errAt, vAt, vFrom, vTo *time.Time
	var vMissing, vExtra, vPending, vRepaired *int64
	err := s.pool.QueryRow(ctx, `SELECT rows_repaired, rows_backfilled, last_error, last_error_at,
		last_verify_at, last_verify_from, last_verify_to, last_verify_missing, last_verify_extra,
		last_verify_pending, last_verify_repaired FROM archive_state`).Scan(&st.RowsRepaired, &st.RowsBackfilled,
		&lastErr, &errAt, &vAt, &vFrom, &vTo, &vMissing, &vExtra, &vPending, &vRepaired)
	if err != nil {
		return st, wrap("archive state", err)
	}
	if lastErr != nil {
		st.LastError = *lastErr
	}
	if errAt != nil {
		st.LastErrorAt = errAt.UTC()
	}
	if vAt != nil {
		v := &VerifyRecord{At: vAt.UTC()}
		if vFrom != nil && vTo != nil {
			v.From, v.To = vFrom.UTC(), vTo.UTC()
		}
		for _, p := range []struct {
			dst *int64
			src *int64
		}{{&v.Missing, vMissing}, {&v.Extra, vExtra}, {&v.Pending, vPending}, {&v.Repaired, vRepaired}} {
			if p.src != nil {
				*p.dst = *p.src
			}
		}
		st.LastVerify = v
	}
	return st, nil
}

// RecordError stores the latest archiving error for status (the message only: errors here
// never carry secrets, pgstore and esstore redact URLs).
func (s *Store) RecordError(ctx context.Context, msg string, at time.Time) error {
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	if _, err := s.pool.Exec(ctx, `UPDATE archive_state SET last_error = $1, last_error_at = $2`, msg, at); err != nil {
		return wrap("record error", err)
	}
	return nil
}

// RecordVerify stores the outcome of a verification.
func (s *Store) RecordVerify(ctx context.Context, v VerifyRecord) error {
	_, err := s.pool.Exec(ctx, `UPDATE archive_state SET last_verify_at = $1, last_verify_from = $2, last_verify_to = $3,
		last_verify_missing = $4, last_verify_extra = $5, last_verify_pending = $6, last_verify_repaired = $7`,
		v.At, v.From, v.To, v.Missing, v.Extra, v.Pending, v.Repaired)
	if err != nil {
		return wrap("record verify", err)
	}
	return nil
}
