package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/pkg/event"
)

// Partitioner creates the archive's day partitions (pgstore.Store): a COPY routes rows only to
// the partitions that exist when it begins.
type Partitioner interface {
	EnsurePartitions(ctx context.Context, times ...time.Time) error
}

// OpenDB opens a pool on url with schema as the search path, for the benchmark's raw paths
// (COPY straight into the archive's table, the grown archive, counts): what no product API does.
func OpenDB(ctx context.Context, url, schema, app string, conns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("postgres url: cannot parse (value redacted)")
	}
	pc.MaxConns = conns
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pc.ConnConfig.RuntimeParams["application_name"] = app
	return pgxpool.NewWithConfig(ctx, pc)
}

// copyEvents COPYs events pulled from next straight into the events table, one statement, no
// staging, no duplicate handling, no checkpoint: the ceiling for the archive's write path.
func copyEvents(ctx context.Context, db *pgxpool.Pool, next func() (event.Event, bool)) (int64, error) {
	return db.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "client_id", "type", "ts", "ingested_at", "payload"},
		pgx.CopyFromFunc(func() ([]any, error) {
			e, ok := next()
			if !ok {
				return nil, nil
			}
			var typ, payload any
			if e.Type != "" {
				typ = e.Type
			}
			if e.Payload != nil {
				payload = []byte(e.Payload)
			}
			return []any{e.ID, e.ClientID, typ, e.Timestamp, e.IngestedAt, payload}, nil
		}))
}

// RawCopyResult is what a raw COPY run measured.
type RawCopyResult struct {
	Rows          int64   `json:"rows"`
	Batch         int     `json:"batch_rows"`
	Elapsed       float64 `json:"elapsed_seconds"`
	RowsPerSecond float64 `json:"rows_per_second"`
}

// RawCopy writes rows events shaped like the load generator's straight into the events table
// with COPY, batch rows per statement (0: all in one), on one connection: the ceiling for the
// archiver, which writes its batches on one connection too.
func RawCopy(ctx context.Context, db *pgxpool.Pool, parts Partitioner, rows, batch, eventSize, clients int) (*RawCopyResult, error) {
	if batch <= 0 || batch > rows {
		batch = rows
	}
	shape := NewDocShape(eventSize, clients)
	run := "rawpg-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := parts.EnsurePartitions(ctx, now); err != nil {
		return nil, err
	}
	var done int64
	start := time.Now()
	for done < int64(rows) {
		end := min(done+int64(batch), int64(rows))
		i := done
		n, err := copyEvents(ctx, db, func() (event.Event, bool) {
			if i >= end {
				return event.Event{}, false
			}
			r := event.Event{ID: run + strconv.FormatInt(i, 10), ClientID: shape.ClientID(), Type: "load",
				Timestamp: now, IngestedAt: now, Payload: shape.Payload(i)}
			i++
			return r, true
		})
		if err != nil {
			return nil, fmt.Errorf("raw copy after %d rows: %w", done, err)
		}
		done += n
	}
	el := time.Since(start).Seconds()
	return &RawCopyResult{Rows: done, Batch: batch, Elapsed: el, RowsPerSecond: float64(done) / el}, nil
}
