package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// RawCopy COPYs rows straight into the events table in one COPY statement, pulling them from
// next until it returns false: no staging table, no duplicate handling, no checkpoint. It is
// the ceiling the archiver's write path is measured against (the benchmark's raw PostgreSQL
// baseline), not a way to archive: one duplicate fails the whole statement. The rows' day
// partitions must exist (EnsurePartitions) before: a COPY routes rows only to the partitions
// that existed when it began.
func (s *Store) RawCopy(ctx context.Context, next func() (Row, bool)) (int64, error) {
	n, err := s.pool.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "client_id", "type", "ts", "ingested_at", "payload"},
		pgx.CopyFromFunc(func() ([]any, error) {
			r, ok := next()
			if !ok {
				return nil, nil
			}
			var typ, payload any
			if r.Type != "" {
				typ = r.Type
			}
			if r.Payload != nil {
				payload = r.Payload
			}
			return []any{r.ID, r.ClientID, typ, r.Timestamp, r.IngestedAt, payload}, nil
		}))
	if err != nil {
		return n, wrap("raw copy", err)
	}
	return n, nil
}
