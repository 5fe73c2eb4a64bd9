package archive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/pgstore"
)

// V1Mover moves a version-1 archive into the day partitions (*pgstore.Store). See pgstore/v1.go
// for how readers and the running archiver see every row exactly once meanwhile. Safe for
// concurrent use; moves are serialised in the database.
type V1Mover interface {
	V1(ctx context.Context) (pgstore.V1State, bool, error)
	MoveV1(ctx context.Context, n int) (moved, inserted int64, err error)
	V1Days(ctx context.Context) ([]time.Time, error)
	CompareV1Day(ctx context.Context, day time.Time) (pgstore.V1Day, error)
	FinishV1(ctx context.Context) error
}

// MigrateReport is the outcome of MigrateV1.
type MigrateReport struct {
	// Pending is false when there was no version-1 archive to move.
	Pending bool
	// Moved counts rows moved by this run (earlier, killed runs not included); Inserted those
	// new to the partitions.
	Moved, Inserted int64
	// Days is the per-day comparison done before events_v1 was dropped.
	Days     []pgstore.V1Day
	Duration time.Duration
	// Finished: every day compared equal and events_v1 was dropped.
	Finished bool
}

// ErrV1Mismatch means a day of the version-1 archive is not entirely in the partitions: nothing
// was dropped.
var ErrV1Mismatch = errors.New("version-1 rows missing from the partitions")

// MigrateV1 moves a version-1 archive's rows into the day partitions in batches of batch rows
// (each batch and the position after it commit together, so a killed run resumes where it
// stopped), then compares every day of events_v1 with the partitions by count and by sum of id
// digests, and only when all agree drops events_v1. The archiver may run meanwhile. p follows
// the rows (total: the estimate of rows left).
func MigrateV1(ctx context.Context, db V1Mover, batch int, p Progress) (*MigrateReport, error) {
	start := time.Now()
	rep := &MigrateReport{}
	st, ok, err := db.V1(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if !ok {
		return rep, nil
	}
	rep.Pending = true
	if p == nil {
		p = nopProgress{}
	}
	p.Start(st.RowsLeft)
	for {
		moved, inserted, err := db.MoveV1(ctx, batch)
		if err != nil {
			p.Finish()
			rep.Duration = time.Since(start)
			return rep, fmt.Errorf("migrate: after %d rows: %w", rep.Moved, err)
		}
		if moved == 0 {
			break
		}
		rep.Moved += moved
		rep.Inserted += inserted
		p.Add(int(moved))
	}
	p.Finish()
	days, err := db.V1Days(ctx)
	if err != nil {
		return rep, fmt.Errorf("migrate: verify: %w", err)
	}
	var bad []string
	for _, day := range days {
		d, err := db.CompareV1Day(ctx, day)
		if err != nil {
			return rep, fmt.Errorf("migrate: verify %s: %w", day.Format(time.DateOnly), err)
		}
		rep.Days = append(rep.Days, d)
		if !d.OK() {
			bad = append(bad, fmt.Sprintf("%s (%d of %d rows)", day.Format(time.DateOnly), d.MovedRows, d.V1Rows))
		}
	}
	if len(bad) > 0 {
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("migrate: %w on %v; events_v1 is kept", ErrV1Mismatch, bad)
	}
	if err := db.FinishV1(ctx); err != nil {
		return rep, fmt.Errorf("migrate: %w", err)
	}
	rep.Finished = true
	rep.Duration = time.Since(start)
	return rep, nil
}
