package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// Restoring PostgreSQL from a backup. The archive is the only copy of the days retention deleted
// from Elasticsearch, so it is what must be backed up (Elasticsearch snapshots are optional:
// every day it holds is archived, or is being archived, by the time it matters). A database
// restored to an earlier point in time comes back with the archiver's checkpoints behind — which
// heals by itself: the feed re-archives, idempotently, everything Elasticsearch still holds — and
// possibly with its cold boundary behind days whose indices retention deleted since the backup.
// Search would then read those days from Elasticsearch, which no longer has them, and answer
// them empty.
//
// Retention records every day it deletes in Elasticsearch's retention log (event.Drop), before
// deleting it. The leader compares the log with the boundary: a boundary below the end of the
// last deleted day means the database went back in time. It records the detection
// (archive_restores, status, spillway_archiver_restore_pending), lets the feed re-archive what
// Elasticsearch holds, then moves the boundary to the end of the last deleted day — search
// refuses the days in between with 503 until then — and reports, per deleted day, how many of
// its events the restored archive lacks: those are gone, only the lost database held them.

// restoreEvery spaces the comparisons of the boundary with the retention log.
const restoreEvery = 30 * time.Second

// checkRestore compares the cold boundary with the retention log; when the boundary is behind,
// it opens (or resumes) the restore's record and returns it (nil: nothing to repair).
func (a *Archiver) checkRestore(ctx context.Context) (*pgstore.Restore, error) {
	if a.indices == nil || a.boundary == nil {
		return nil, nil
	}
	through, ok, err := a.indices.DroppedThrough(ctx)
	if err != nil || !ok {
		return nil, err
	}
	b, bok, err := a.boundary.ColdBoundary(ctx, a.es.Prefix())
	if err != nil {
		return nil, err
	}
	if bok && !b.Before(through) {
		a.metrics.restorePending.Set(0)
		return nil, nil
	}
	rec, err := a.pg.OpenRestore(ctx, b, through)
	if err != nil {
		return nil, err
	}
	a.metrics.restorePending.Set(1)
	a.logger.Error("PostgreSQL is behind Elasticsearch's retention log: it came back from an earlier point in time; re-archiving what Elasticsearch holds, then moving the cold boundary",
		"cold_boundary", b, "dropped_through", through, "restore", rec.ID)
	return &rec, nil
}

// repairRestore finishes a restore once the feed has caught up (a round completed after the
// detection): it counts what each deleted day lacks, moves the boundary to the end of the last
// deleted day and closes the record.
func (a *Archiver) repairRestore(ctx context.Context, rec *pgstore.Restore) error {
	drops, err := a.indices.Drops(ctx)
	if err != nil {
		return err
	}
	var lost []pgstore.LostDay
	var total int64
	for _, d := range drops {
		if d.Day.Before(rec.BoundaryFound) || !d.Day.Before(rec.DroppedThrough) {
			continue // below the boundary the restored archive served it already; none above
		}
		counts, err := a.pg.CountRanges(ctx, []event.Range{{From: d.Day, To: d.Day.Add(24 * time.Hour)}})
		if err != nil {
			return err
		}
		if n := counts[0].N; n < d.Docs {
			lost = append(lost, pgstore.LostDay{Day: d.Day, Logged: d.Docs, Archived: n})
			total += d.Docs - n
		}
	}
	b, err := a.boundary.AdvanceColdBoundary(ctx, a.es.Prefix(), rec.DroppedThrough)
	if err != nil {
		return err
	}
	a.metrics.boundary.Set(float64(b.Unix()))
	if err := a.pg.CloseRestore(ctx, rec.ID, lost); err != nil {
		return err
	}
	a.metrics.restorePending.Set(0)
	if total > 0 {
		a.logger.Error("restore repaired: events of deleted days are gone (only the lost database held them)",
			"restore", rec.ID, "events_lost", total, "days", len(lost), "cold_boundary", b)
	} else {
		a.logger.Info("restore repaired: nothing lost", "restore", rec.ID, "cold_boundary", b)
	}
	return nil
}

// RestoreStatus is one detected restore, for status.
type RestoreStatus struct {
	DetectedAt     time.Time         `json:"detected_at"`
	BoundaryFound  time.Time         `json:"boundary_found,omitzero"`
	DroppedThrough time.Time         `json:"dropped_through"`
	RepairedAt     time.Time         `json:"repaired_at,omitzero"`
	EventsLost     int64             `json:"events_lost"`
	DaysLost       []pgstore.LostDay `json:"days_lost,omitempty"`
}

func restoreStatus(rs []pgstore.Restore) []RestoreStatus {
	out := make([]RestoreStatus, len(rs))
	for i, r := range rs {
		out[i] = RestoreStatus{DetectedAt: r.DetectedAt, BoundaryFound: r.BoundaryFound, DroppedThrough: r.DroppedThrough,
			RepairedAt: r.RepairedAt, EventsLost: r.EventsLost, DaysLost: r.DaysLost}
	}
	return out
}

func (r RestoreStatus) String() string {
	if r.RepairedAt.IsZero() {
		return fmt.Sprintf("detected %s: PostgreSQL behind the retention log (boundary %s, deleted through %s); repair pending",
			r.DetectedAt.Format(time.RFC3339), r.BoundaryFound.Format(time.RFC3339), r.DroppedThrough.Format(time.RFC3339))
	}
	return fmt.Sprintf("detected %s, repaired %s: %d events of %d deleted days lost", r.DetectedAt.Format(time.RFC3339),
		r.RepairedAt.Format(time.RFC3339), r.EventsLost, len(r.DaysLost))
}
