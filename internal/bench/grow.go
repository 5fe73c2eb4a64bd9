package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// GrowResult describes an archive grown for the S6 comparison.
type GrowResult struct {
	Rows    int64   `json:"rows"`
	Days    int     `json:"days"`
	Elapsed float64 `json:"elapsed_seconds"`
	Bytes   int64   `json:"bytes"` // the partitions' size on disk
}

// Grow fills an archive (a migrated, empty schema) with rows events of the load generator's
// shape spread evenly over the days UTC days before yesterday, through raw COPY into their day
// partitions, then analyses the table: the state of an archive
// that has run for days, against which the archiver's write rate is compared with an empty one.
func Grow(ctx context.Context, db *pgxpool.Pool, archive *pgstore.Store, rows int64, days, eventSize, clients int) (*GrowResult, error) {
	if rows < 1 || days < 1 {
		return nil, fmt.Errorf("grow: %d rows over %d days", rows, days)
	}
	shape := NewDocShape(eventSize, clients)
	first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days-1)
	step := time.Duration(int64(days) * int64(24*time.Hour) / rows)
	start := time.Now()
	var dayList []time.Time
	for d := range days {
		dayList = append(dayList, first.AddDate(0, 0, d))
	}
	if err := archive.EnsurePartitions(ctx, dayList...); err != nil {
		return nil, err
	}
	var i int64
	n, err := copyEvents(ctx, db, func() (event.Event, bool) {
		if i >= rows {
			return event.Event{}, false
		}
		ts := first.Add(time.Duration(i) * step).Truncate(time.Microsecond)
		r := event.Event{ID: "grown-" + strconv.FormatInt(i, 36), ClientID: shape.ClientID(), Type: "load",
			Timestamp: ts, IngestedAt: ts, Payload: shape.Payload(i)}
		i++
		return r, true
	})
	if err != nil {
		return nil, fmt.Errorf("grow after %d rows: %w", n, err)
	}
	if _, err := db.Exec(ctx, "ANALYZE events"); err != nil {
		return nil, fmt.Errorf("grow: analyze: %w", err)
	}
	parts, err := archive.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	res := &GrowResult{Rows: n, Days: days, Elapsed: time.Since(start).Seconds()}
	for _, p := range parts {
		res.Bytes += p.Bytes
	}
	return res, nil
}
