package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spillway/spillway/pkg/pgstore"
)

// Copier is the raw COPY path (pgstore.Store.RawCopy) and the partitions it needs.
type Copier interface {
	RawCopy(ctx context.Context, next func() (pgstore.Row, bool)) (int64, error)
	EnsurePartitions(ctx context.Context, times ...time.Time) error
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
func RawCopy(ctx context.Context, db Copier, rows, batch, eventSize, clients int) (*RawCopyResult, error) {
	if batch <= 0 || batch > rows {
		batch = rows
	}
	shape := NewDocShape(eventSize, clients)
	run := "rawpg-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := db.EnsurePartitions(ctx, now); err != nil {
		return nil, err
	}
	var done int64
	start := time.Now()
	for done < int64(rows) {
		end := min(done+int64(batch), int64(rows))
		i := done
		n, err := db.RawCopy(ctx, func() (pgstore.Row, bool) {
			if i >= end {
				return pgstore.Row{}, false
			}
			r := pgstore.Row{ID: run + strconv.FormatInt(i, 10), ClientID: shape.ClientID(), Type: "load",
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
