package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Checkpoint is the archiver's position in one shard of one index: every document of the shard
// with _seq_no ≤ SeqNo is in the events table.
type Checkpoint struct {
	IndexUUID string
	Shard     int
	IndexName string
	SeqNo     int64
	// Rows counts the rows this shard's batches inserted (ids already present not counted).
	Rows      int64
	UpdatedAt time.Time
}

// querier is a pool or one of its connections.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Checkpoints lists every checkpoint, by index name and shard.
func (s *Store) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	return checkpoints(ctx, s.pool)
}

func checkpoints(ctx context.Context, q querier) ([]Checkpoint, error) {
	rows, err := q.Query(ctx, `SELECT index_uuid, shard, index_name, seq_no, rows, updated_at
		FROM archive_checkpoints ORDER BY index_name, shard, index_uuid`)
	if err != nil {
		return nil, wrap("checkpoints", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Checkpoint, error) {
		var c Checkpoint
		err := r.Scan(&c.IndexUUID, &c.Shard, &c.IndexName, &c.SeqNo, &c.Rows, &c.UpdatedAt)
		c.UpdatedAt = c.UpdatedAt.UTC()
		return c, err
	})
	if err != nil {
		return nil, wrap("checkpoints", err)
	}
	return out, nil
}

// String names the checkpoint for messages.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s[%d] (%s) at %d", c.IndexName, c.Shard, c.IndexUUID, c.SeqNo)
}
