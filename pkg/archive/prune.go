package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Prune is the archive's own retention: it drops whole day partitions of PostgreSQL older than
// a horizon. Old data leaves by the partition (a catalog operation), never by DELETE.
//
// A day is eligible only when nothing can still be served from it but PostgreSQL and the
// operator chose to forget it:
//   - its whole UTC day ends at or before the horizon (midnight of now − OlderThan);
//   - it ends at or before the cold boundary: search reads that day from PostgreSQL, which means
//     Elasticsearch retention verified it and let go of it (above the boundary, PostgreSQL is the
//     copy of what Elasticsearch serves, and there is nothing to reclaim by dropping it);
//   - Elasticsearch holds no index for it (retention deletes the index a grace period after
//     moving the boundary: until then the day is still served from there).
//
// After a prune, reads of the dropped days return what exists: nothing. Prune refuses to run
// while a version-1 archive is being migrated (archiver migrate), whose rows are not in day
// partitions yet.

// PruneRequest asks for one prune pass.
type PruneRequest struct {
	// OlderThan sets the horizon: midnight (UTC) of now − OlderThan.
	OlderThan time.Duration
	// Apply drops the eligible partitions; without it the pass only lists them.
	Apply bool
}

// Prune actions of one partition.
const (
	PruneDrop    = "drop"    // eligible; would be dropped (listing)
	PruneDropped = "dropped" // dropped
	PruneKept    = "kept"    // past the horizon but not eligible (see Reason)
)

// PartitionPrune is what a prune pass did with one partition past the horizon.
type PartitionPrune struct {
	Partition string    `json:"partition"`
	Day       time.Time `json:"day"`
	Bytes     int64     `json:"bytes"`
	// Rows is PostgreSQL's estimate (-1 before the partition was first analysed).
	Rows   int64  `json:"rows"`
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// PruneReport is the outcome of one prune pass.
type PruneReport struct {
	Horizon time.Time `json:"horizon"`
	Applied bool      `json:"applied"`
	// Boundary is the cold boundary (zero: none recorded, Elasticsearch serves every day).
	Boundary   time.Time        `json:"boundary,omitzero"`
	Partitions []PartitionPrune `json:"partitions"`
	// EarliestDay is the oldest day the archive holds after the pass (nil: none).
	EarliestDay *time.Time `json:"earliest_day,omitempty"`
}

// ErrV1Pending means a version-1 archive's move is not finished.
var ErrV1Pending = errors.New("a version-1 archive is being migrated: run archiver migrate to the end first")

// Prune runs one prune pass (see the comment at the top of this file).
func (a *Archiver) Prune(ctx context.Context, req PruneRequest) (*PruneReport, error) {
	if a.indices == nil || a.boundary == nil {
		return nil, errors.New("prune: the archiver was built without Indices and Boundary")
	}
	if req.OlderThan <= 0 {
		return nil, fmt.Errorf("prune: --older-than must be positive, got %s", req.OlderThan)
	}
	if _, pending, err := a.pg.V1(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	} else if pending {
		return nil, fmt.Errorf("prune: %w", ErrV1Pending)
	}
	rep := &PruneReport{Horizon: a.now().UTC().Add(-req.OlderThan).Truncate(24 * time.Hour), Applied: req.Apply, Partitions: []PartitionPrune{}}
	b, ok, err := a.boundary.ColdBoundary(ctx, a.es.Prefix())
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	if ok {
		rep.Boundary = b
	}
	indices, err := a.indices.Indices(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	inES := map[time.Time]string{}
	for _, idx := range indices {
		inES[idx.Day] = idx.Name
	}
	parts, err := a.pg.Partitions(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	var kept []time.Time
	for _, p := range parts {
		if p.Day.IsZero() {
			continue // not one of ours (named by hand): never touched
		}
		end := p.Day.Add(24 * time.Hour)
		if end.After(rep.Horizon) {
			kept = append(kept, p.Day)
			continue
		}
		item := PartitionPrune{Partition: p.Name, Day: p.Day, Bytes: p.Bytes, Rows: p.Rows, Action: PruneDrop}
		switch {
		case rep.Boundary.IsZero():
			item.Action, item.Reason = PruneKept, "no cold boundary: Elasticsearch serves every day"
		case end.After(rep.Boundary):
			item.Action, item.Reason = PruneKept, "above the cold boundary "+rep.Boundary.Format(time.RFC3339)+": served from Elasticsearch"
		case inES[p.Day] != "":
			item.Action, item.Reason = PruneKept, "Elasticsearch still holds "+inES[p.Day]
		}
		if item.Action == PruneDrop && req.Apply {
			if err := a.pg.DropPartition(ctx, p.Day); err != nil {
				rep.Partitions = append(rep.Partitions, item)
				return rep, fmt.Errorf("prune: %w", err)
			}
			item.Action = PruneDropped
			a.metrics.partitionsDropped.Inc()
			a.logger.Info("dropped archive partition", "partition", p.Name, "day", p.Day, "bytes", p.Bytes)
		}
		if item.Action != PruneDropped {
			kept = append(kept, p.Day)
		}
		rep.Partitions = append(rep.Partitions, item)
	}
	if len(kept) > 0 {
		first := kept[0]
		for _, d := range kept {
			if d.Before(first) {
				first = d
			}
		}
		rep.EarliestDay = &first
	}
	if req.Apply {
		if parts, err := a.pg.Partitions(ctx); err == nil {
			a.metrics.setPartitions(parts)
		}
	}
	return rep, nil
}

// WriteTable writes the report for people.
func (r *PruneReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tDAY\tROWS (EST.)\tSIZE\tACTION\tREASON")
	for _, p := range r.Partitions {
		rows := fmt.Sprint(p.Rows)
		if p.Rows < 0 {
			rows = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Partition, p.Day.Format(time.DateOnly), rows, bytesString(p.Bytes), p.Action, p.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	mode := "listing only (--apply to drop)"
	if r.Applied {
		mode = "applied"
	}
	boundary := "none (Elasticsearch serves every day)"
	if !r.Boundary.IsZero() {
		boundary = r.Boundary.Format(time.RFC3339)
	}
	earliest := "none"
	if r.EarliestDay != nil {
		earliest = r.EarliestDay.Format(time.DateOnly)
	}
	_, err := fmt.Fprintf(w, "\nhorizon %s, %s; cold boundary %s; %d partitions past the horizon; earliest day held %s\n",
		r.Horizon.Format(time.RFC3339), mode, boundary, len(r.Partitions), earliest)
	return err
}
