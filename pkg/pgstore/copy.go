package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spillway/spillway/pkg/event"
)

// rowSize is the number of data bytes an event sends with COPY (field contents, without
// framing). An event's Type "" is stored as NULL, and so is a nil Payload; a payload is JSON text
// written to jsonb verbatim (PostgreSQL parses it; numeric keeps every digit).
func rowSize(e event.Event) int64 {
	return int64(len(e.ID)+len(e.ClientID)+len(e.Type)+len(e.Payload)) + 16
}

// Batch is one page of one shard's sequence-number feed, to be committed together with the
// shard's new checkpoint.
type Batch struct {
	IndexUUID string
	IndexName string
	Shard     int
	// From is the checkpoint the page was read after (-1: from the start of the shard). The
	// commit fails with ErrCheckpointMoved unless the stored checkpoint still equals it.
	From int64
	// To is the new checkpoint: the last row's _seq_no, or the upper bound of the read when the
	// range was exhausted.
	To   int64
	Rows []event.Event
}

// Result is what a COPY transaction wrote.
type Result struct {
	// Inserted counts rows new to the archive; an (id, UTC day) already there is skipped.
	Inserted int64
	// Bytes is the row data sent with COPY.
	Bytes int64
	// Staged says the rows went through the staging table: some (id, day) of the batch was
	// archived already, or a version-1 archive is being migrated. Otherwise they were COPYed
	// straight into events.
	Staged bool
}

// ErrCheckpointMoved means the stored checkpoint is not where a batch started: another process
// committed that range first. Nothing of the batch was written; re-read the checkpoint.
var ErrCheckpointMoved = errors.New("checkpoint moved")

// CheckpointMovedError tells where the checkpoint was found. It matches ErrCheckpointMoved.
type CheckpointMovedError struct {
	IndexUUID string
	Shard     int
	Want, Got int64
}

// Error describes where the checkpoint was found.
func (e *CheckpointMovedError) Error() string {
	return fmt.Sprintf("checkpoint of %s/%d is %d, batch started at %d: %v", e.IndexUUID, e.Shard, e.Got, e.Want, ErrCheckpointMoved)
}

// Is makes the error match ErrCheckpointMoved.
func (e *CheckpointMovedError) Is(target error) bool { return target == ErrCheckpointMoved }

// beginner is a pool or one of its connections.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// rowTimes lists the rows' timestamps, for the partitions they need.
func rowTimes(rows []event.Event) []time.Time {
	ts := make([]time.Time, len(rows))
	for i, r := range rows {
		ts[i] = r.Timestamp
	}
	return ts
}

// commitBatch writes a batch and its checkpoint in one transaction: lock the checkpoint row
// (creating it at -1 if absent), check it still equals b.From, COPY the rows into a staging
// table, insert them into events skipping (id, day) pairs already archived, and move the
// checkpoint to b.To. Either all of it commits or none of it does. The day partitions the rows
// need are created first, in their own transactions on the same connection.
func (s *Store) commitBatch(ctx context.Context, db beginner, b Batch) (Result, error) {
	if b.To < b.From {
		return Result{}, fmt.Errorf("commit batch: checkpoint would go back from %d to %d", b.From, b.To)
	}
	if err := s.ensurePartitions(ctx, db, rowTimes(b.Rows)); err != nil {
		return Result{}, fmt.Errorf("commit batch: %w", err)
	}
	var res Result
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO archive_checkpoints (index_uuid, shard, index_name, seq_no)
			VALUES ($1, $2, $3, -1) ON CONFLICT (index_uuid, shard) DO NOTHING`, b.IndexUUID, b.Shard, b.IndexName); err != nil {
			return fmt.Errorf("create checkpoint: %w", err)
		}
		var cur int64
		if err := tx.QueryRow(ctx, `SELECT seq_no FROM archive_checkpoints WHERE index_uuid = $1 AND shard = $2 FOR UPDATE`,
			b.IndexUUID, b.Shard).Scan(&cur); err != nil {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		if cur != b.From {
			return &CheckpointMovedError{IndexUUID: b.IndexUUID, Shard: b.Shard, Want: b.From, Got: cur}
		}
		var err error
		if res, err = copyDirect(ctx, tx, b.Rows); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE archive_checkpoints SET seq_no = $3, rows = rows + $4, index_name = $5, updated_at = now()
			WHERE index_uuid = $1 AND shard = $2`, b.IndexUUID, b.Shard, b.To, res.Inserted, b.IndexName); err != nil {
			return fmt.Errorf("move checkpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrCheckpointMoved) {
			return Result{}, err
		}
		s.forgetOnMissing(err)
		return Result{}, wrap("commit batch", err)
	}
	return res, nil
}

// copyDirect COPYs rows straight into events, the feed's common case: a batch of the feed holds
// rows no one has archived yet (the checkpoint moves in the same transaction, so a batch is never
// written twice). It runs in a savepoint; when an (id, day) is there already — repair, backfill or
// an import wrote it ahead of the feed — COPY fails on the partition's unique index, the savepoint
// is rolled back, and the batch takes the staging table (stageRows), which skips what is archived.
// Straight COPY writes each row once instead of twice (staging, then INSERT … SELECT): S6 in
// BENCHMARKS.md. While a version-1 archive is migrated, every batch takes the staging path.
func copyDirect(ctx context.Context, tx pgx.Tx, rows []event.Event) (Result, error) {
	if len(rows) == 0 {
		return Result{}, nil
	}
	migrating, err := migratingV1(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	if migrating {
		return stageRows(ctx, tx, rows, true)
	}
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return Result{}, fmt.Errorf("savepoint: %w", err)
	}
	var res Result
	n, err := sp.CopyFrom(ctx, pgx.Identifier{"events"}, copyColumns, rowSource(rows, &res))
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return Result{}, fmt.Errorf("release savepoint: %w", err)
		}
		res.Inserted = n
		return res, nil
	}
	if rerr := sp.Rollback(ctx); rerr != nil {
		return Result{}, fmt.Errorf("copy: %w (rollback to savepoint: %v)", err, rerr)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" { // unique_violation
		return Result{}, fmt.Errorf("copy: %w", err)
	}
	return stageRows(ctx, tx, rows, false)
}

// copyColumns are the columns COPY writes, in rowSource's order.
var copyColumns = []string{"id", "client_id", "type", "ts", "ingested_at", "payload"}

// rowSource feeds rows to COPY and adds their size to res.Bytes.
func rowSource(rows []event.Event, res *Result) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		r := rows[i]
		res.Bytes += rowSize(r)
		var typ, payload any
		if r.Type != "" {
			typ = r.Type
		}
		if r.Payload != nil {
			payload = []byte(r.Payload) // JSON text, verbatim
		}
		return []any{r.ID, r.ClientID, typ, r.Timestamp, r.IngestedAt, payload}, nil
	})
}

// migratingV1 reports whether a version-1 archive is being migrated (events_v1 exists).
func migratingV1(ctx context.Context, tx pgx.Tx) (bool, error) {
	var migrating bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('events_v1') IS NOT NULL`).Scan(&migrating); err != nil {
		return false, fmt.Errorf("migration state: %w", err)
	}
	return migrating, nil
}

// copyRows COPYs rows into a staging table that lives until the transaction ends, then inserts
// them into events; an (id, UTC day) already archived is skipped (each day partition's UNIQUE
// (id) is the arbiter), which makes every write idempotent. The partitions must exist.
func copyRows(ctx context.Context, tx pgx.Tx, rows []event.Event) (Result, error) {
	if len(rows) == 0 {
		return Result{}, nil
	}
	migrating, err := migratingV1(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	return stageRows(ctx, tx, rows, migrating)
}

// stageRows is copyRows once it is known whether a version-1 archive is being migrated.
func stageRows(ctx context.Context, tx pgx.Tx, rows []event.Event, migrating bool) (Result, error) {
	// A staging table instead of COPY straight into events: COPY has no ON CONFLICT, and one
	// duplicate would fail the whole batch. It must carry payload's compression (INCLUDING ALL
	// has COMPRESSION on PostgreSQL 14+): COPY compresses the payloads into it, and INSERT ...
	// SELECT moves those compressed values into events as they are, never recompressing them.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE archive_staging (LIKE events INCLUDING ALL EXCLUDING INDEXES) ON COMMIT DROP`); err != nil {
		return Result{}, fmt.Errorf("staging table: %w", err)
	}
	res := Result{Staged: true}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"archive_staging"}, copyColumns, rowSource(rows, &res)); err != nil {
		return Result{}, fmt.Errorf("copy: %w", err)
	}
	skipV1 := ""
	if migrating {
		// While a version-1 archive is migrated, an (id, day) whose row still waits in events_v1
		// is archived already: readers see it there (events_all), and the move brings it over.
		skipV1 = ` WHERE NOT EXISTS (SELECT 1 FROM events_v1 v, archive_v1_migration m
			WHERE v.id = s.id AND (v.ts, v.id) > (m.moved_ts, m.moved_id)
			  AND v.ts >= date_trunc('day', s.ts, 'UTC') AND v.ts < date_trunc('day', s.ts, 'UTC') + interval '1 day')`
	}
	tag, err := tx.Exec(ctx, `INSERT INTO events (id, client_id, type, ts, ingested_at, payload)
		SELECT s.id, s.client_id, s.type, s.ts, s.ingested_at, s.payload FROM archive_staging s`+skipV1+`
		ON CONFLICT DO NOTHING`)
	if err != nil {
		return Result{}, fmt.Errorf("insert from staging: %w", err)
	}
	res.Inserted = tag.RowsAffected()
	return res, nil
}

// Origin says why rows are written outside the feed; status reports the counts.
type Origin int

// The writers outside the feed.
const (
	OriginRepair Origin = iota + 1
	OriginBackfill
)

// CopyEvents writes rows outside the sequence-number feed (verify --repair, backfill), skipping
// (id, day) pairs already archived, and counts them by origin in the same transaction. No
// checkpoint moves. The rows' day partitions are created first.
func (s *Store) CopyEvents(ctx context.Context, origin Origin, rows []event.Event) (Result, error) {
	var column string
	switch origin {
	case OriginRepair:
		column = "rows_repaired"
	case OriginBackfill:
		column = "rows_backfilled"
	default:
		return Result{}, fmt.Errorf("copy events: unknown origin %d", origin)
	}
	if err := s.EnsurePartitions(ctx, rowTimes(rows)...); err != nil {
		return Result{}, fmt.Errorf("copy events: %w", err)
	}
	var res Result
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if res, err = copyRows(ctx, tx, rows); err != nil {
			return err
		}
		if res.Inserted == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE archive_state SET `+column+` = `+column+` + $1`, res.Inserted)
		return err
	})
	if err != nil {
		s.forgetOnMissing(err)
		return Result{}, wrap("copy events", err)
	}
	return res, nil
}
