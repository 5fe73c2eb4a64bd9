package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Retention drops daily Elasticsearch indices once PostgreSQL provably holds their events, and
// moves the cold boundary — the instant below which search reads PostgreSQL — over them first.
//
// The order of operations is what keeps every event readable from one tier or the other:
//
//  1. Candidates are the event indices whose whole UTC day ends at or before the horizon
//     (midnight of now − OlderThan), oldest first.
//  2. Each is verified (Verify over its day: Report.Complete). The first that fails stops the
//     run: it is kept and so is everything after it, because the boundary can only cover a
//     contiguous run of days from the oldest, and a later day dropped behind a kept one would be
//     readable from neither tier.
//  3. The boundary moves to the end of the last verified day (only ever forward).
//  4. Retention waits out Grace: every search replica re-reads the boundary and finishes the
//     queries it started with the old one, so none still asks Elasticsearch for those days.
//  5. Each verified index is verified again (an event written meanwhile, which only a
//     misconfigured ingest.max_past_age allows, keeps it), recorded in the retention log (its
//     day, events and id digests: what PostgreSQL alone holds from now on, kept outside
//     PostgreSQL so that a restore of an older backup is detected — see restore.go) and deleted.

// Indices lists and deletes the daily event indices and keeps the retention log, the record of
// deleted days kept in Elasticsearch (*esstore.Store). Safe for concurrent use.
type Indices interface {
	Indices(ctx context.Context) ([]event.DailyIndex, error)
	DeleteIndex(ctx context.Context, name string) error
	// LogDrop records a day about to be deleted; DroppedThrough returns the end of the newest
	// day recorded (ok false: none).
	LogDrop(ctx context.Context, d event.Drop) error
	DroppedThrough(ctx context.Context) (time.Time, bool, error)
	// Drops lists the recorded days, oldest first.
	Drops(ctx context.Context) ([]event.Drop, error)
}

// Boundary reads and advances the cold boundary of an index prefix (*pgstore.Store). Advance
// never moves it back and returns the value now recorded. Safe for concurrent use.
type Boundary interface {
	ColdBoundary(ctx context.Context, prefix string) (time.Time, bool, error)
	AdvanceColdBoundary(ctx context.Context, prefix string, to time.Time) (time.Time, error)
}

// RetentionRequest asks for one retention pass.
type RetentionRequest struct {
	// OlderThan sets the horizon: midnight (UTC) of now − OlderThan. The caller checks it
	// against ingest.max_past_age (config.RetentionAllowed).
	OlderThan time.Duration
	// Apply moves the boundary and deletes; without it the pass only reports what it would do.
	Apply bool
}

// Retention actions of one index.
const (
	ActionDrop    = "drop"    // verified; would be dropped (listing)
	ActionDropped = "dropped" // deleted
	ActionKept    = "KEPT"    // failed verification or deletion: kept, and the run stopped here
	ActionSkipped = "skipped" // after a kept index: not looked at, kept
)

// IndexRetention is what retention did with one index.
type IndexRetention struct {
	Index  string    `json:"index"`
	Day    time.Time `json:"day"`
	Docs   int64     `json:"docs"`
	Action string    `json:"action"`
	Reason string    `json:"reason,omitempty"`
}

// RetentionReport is the outcome of one retention pass.
type RetentionReport struct {
	Horizon time.Time `json:"horizon"`
	Applied bool      `json:"applied"`
	// BoundaryBefore and BoundaryAfter are the cold boundary before and after the pass (zero:
	// none recorded).
	BoundaryBefore time.Time        `json:"boundary_before,omitzero"`
	BoundaryAfter  time.Time        `json:"boundary_after,omitzero"`
	Indices        []IndexRetention `json:"indices"`
}

// Kept counts the candidate indices kept because they failed verification or deletion (those
// skipped after them not included).
func (r *RetentionReport) Kept() int {
	n := 0
	for _, i := range r.Indices {
		if i.Action == ActionKept {
			n++
		}
	}
	return n
}

// Retention runs one retention pass (see the comment at the top of this file). grace is the wait
// between moving the boundary and deleting. It returns the report so far with an error when a
// store fails; a kept index is not an error (see Kept).
func (a *Archiver) Retention(ctx context.Context, req RetentionRequest, grace time.Duration) (*RetentionReport, error) {
	if a.indices == nil || a.boundary == nil {
		return nil, errors.New("retention: the archiver was built without Indices and Boundary")
	}
	if req.OlderThan <= 0 {
		return nil, fmt.Errorf("retention: --older-than must be positive, got %s", req.OlderThan)
	}
	prefix := a.es.Prefix()
	rep := &RetentionReport{Horizon: a.now().UTC().Add(-req.OlderThan).Truncate(24 * time.Hour), Applied: req.Apply}
	b, ok, err := a.boundary.ColdBoundary(ctx, prefix)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	if ok {
		rep.BoundaryBefore, rep.BoundaryAfter = b, b
	}
	all, err := a.indices.Indices(ctx)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	var verified []event.DailyIndex
	stopped := false
	for _, idx := range all {
		if idx.Day.Add(24 * time.Hour).After(rep.Horizon) {
			break // sorted by day: the rest is younger
		}
		item := IndexRetention{Index: idx.Name, Day: idx.Day, Docs: idx.Docs}
		if stopped {
			item.Action, item.Reason = ActionSkipped, "an older index was kept"
			rep.Indices = append(rep.Indices, item)
			continue
		}
		if reason, err := a.retainable(ctx, idx, rep.BoundaryBefore); err != nil {
			return rep, fmt.Errorf("retention: %s: %w", idx.Name, err)
		} else if reason != "" {
			item.Action, item.Reason = ActionKept, reason
			stopped = true
			a.logger.Error("retention keeps an index that is not fully archived; later indices are kept too",
				"index", idx.Name, "reason", reason)
		} else {
			item.Action = ActionDrop
			verified = append(verified, idx)
		}
		rep.Indices = append(rep.Indices, item)
	}
	if !req.Apply || len(verified) == 0 {
		return rep, nil
	}

	to := verified[len(verified)-1].Day.Add(24 * time.Hour)
	if rep.BoundaryAfter, err = a.boundary.AdvanceColdBoundary(ctx, prefix, to); err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	a.metrics.boundary.Set(float64(rep.BoundaryAfter.Unix()))
	if rep.BoundaryAfter.After(rep.BoundaryBefore) {
		a.logger.Info("cold boundary moved", "prefix", prefix, "from", rep.BoundaryBefore, "to", rep.BoundaryAfter)
	}
	// Waited even when the boundary was already there: a pass that moved it and then crashed may
	// have done so moments ago.
	a.logger.Info("waiting for search replicas to see the boundary before deleting", "grace", grace.String(), "indices", len(verified))
	t := time.NewTimer(grace)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return rep, fmt.Errorf("retention: %w", ctx.Err())
	}

	byName := map[string]*IndexRetention{}
	for i := range rep.Indices {
		byName[rep.Indices[i].Index] = &rep.Indices[i]
	}
	for n, idx := range verified {
		item := byName[idx.Name]
		reason, vrep, err := a.retainableReport(ctx, idx, rep.BoundaryBefore)
		if err == nil && reason == "" {
			docs, hash := vrep.archived()
			err = a.indices.LogDrop(ctx, event.Drop{Index: idx.Name, Day: idx.Day, Docs: docs, IDHash: hash,
				Boundary: rep.BoundaryAfter, DeletedAt: a.now().UTC()})
			if err == nil {
				err = a.indices.DeleteIndex(ctx, idx.Name)
			}
		}
		if err != nil || reason != "" {
			item.Action, item.Reason = ActionKept, reason
			if err != nil {
				item.Reason = "log and delete: " + err.Error()
			} else {
				item.Reason = "changed since verified: " + reason
			}
			for _, later := range verified[n+1:] {
				byName[later.Name].Action, byName[later.Name].Reason = ActionSkipped, "an older index was kept"
			}
			a.logger.Error("retention keeps an index", "index", idx.Name, "reason", item.Reason)
			return rep, nil
		}
		item.Action = ActionDropped
		a.metrics.indicesDropped.Inc()
		a.logger.Info("dropped index", "index", idx.Name, "docs", idx.Docs)
	}
	return rep, nil
}

// retainable returns "" when every event of the index is in PostgreSQL, or why not. Above the
// boundary the day must verify Complete: rows in PostgreSQL that Elasticsearch lacks (extra) would
// appear in the API once the boundary passes them, so they stop retention for a look. Below it,
// search reads PostgreSQL already and extra rows are expected: this index was recreated after its
// predecessor was dropped (only a misconfigured ingest.max_past_age allows that), and all that
// matters is that its own events are archived.
func (a *Archiver) retainable(ctx context.Context, idx event.DailyIndex, boundary time.Time) (string, error) {
	reason, _, err := a.retainableReport(ctx, idx, boundary)
	return reason, err
}

// retainableReport is retainable with the verification it ran (nil when it ran none).
func (a *Archiver) retainableReport(ctx context.Context, idx event.DailyIndex, boundary time.Time) (string, *Report, error) {
	switch {
	case !idx.Open:
		return "index is closed: its events cannot be verified", nil, nil
	case idx.Health == "red":
		return "index is red: some shards cannot be read, so neither verified", nil, nil
	}
	// Buckets of archiver.verify_bucket rather than one per day: ids are compared only where
	// counts or id digests differ, and a narrow mismatching bucket is cheaper to compare. The
	// counts of all buckets travel in one request per shard.
	rep, err := a.Verify(ctx, VerifyRequest{From: idx.Day, To: idx.Day.Add(24 * time.Hour)})
	if err != nil {
		return "", nil, err
	}
	below := !idx.Day.Add(24 * time.Hour).After(boundary)
	if rep.Complete() || below && rep.Missing-rep.Repaired == 0 && rep.Pending == 0 && len(rep.Behind) == 0 {
		return "", rep, nil
	}
	var why []string
	if n := rep.Missing - rep.Repaired; n > 0 {
		why = append(why, fmt.Sprintf("%d events missing in PostgreSQL (e.g. %s)", n, strings.Join(rep.MissingIDs[:min(3, len(rep.MissingIDs))], ", ")))
	}
	if rep.Extra > 0 {
		why = append(why, fmt.Sprintf("%d rows in PostgreSQL not in Elasticsearch", rep.Extra))
	}
	if rep.Pending > 0 {
		why = append(why, fmt.Sprintf("%d events not archived yet", rep.Pending))
	}
	if len(rep.Behind) > 0 {
		why = append(why, "archiver behind: "+strings.Join(rep.Behind, "; "))
	}
	return strings.Join(why, "; "), rep, nil
}

// WriteTable writes the report for people.
func (r *RetentionReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tDAY\tDOCS\tACTION\tREASON")
	for _, i := range r.Indices {
		docs := fmt.Sprint(i.Docs)
		if i.Docs < 0 {
			docs = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.Index, i.Day.Format(time.DateOnly), docs, i.Action, i.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	bound := func(t time.Time) string {
		if t.IsZero() {
			return "none (Elasticsearch holds everything)"
		}
		return t.Format(time.RFC3339)
	}
	mode := "listing only (--apply to drop)"
	if r.Applied {
		mode = "applied"
	}
	_, err := fmt.Fprintf(w, "\nhorizon %s, %s; cold boundary %s → %s; %d candidate indices, %d kept\n",
		r.Horizon.Format(time.RFC3339), mode, bound(r.BoundaryBefore), bound(r.BoundaryAfter), len(r.Indices), r.Kept())
	return err
}

// retentionEvery spaces the periodic passes: indices age by whole days, so an hourly pass drops
// each within an hour of its turn.
const retentionEvery = time.Hour

// startRetention runs retention (Config.RetentionAfter) at once and then hourly while the lease
// is held, beside the archiving loop: its grace wait must not hold up archiving. The returned
// function stops it and waits.
func (a *Archiver) startRetention(ctx context.Context) (stop func()) {
	if a.cfg.RetentionAfter <= 0 || a.indices == nil || a.boundary == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			a.periodicRetention(ctx)
			t := time.NewTimer(retentionEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-a.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (a *Archiver) periodicRetention(ctx context.Context) {
	rep, err := a.Retention(ctx, RetentionRequest{OlderThan: a.cfg.RetentionAfter, Apply: true}, a.retentionGrace)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		a.metrics.retentionRuns.WithLabelValues("error").Inc()
		a.fail(ctx, "retention", err)
		return
	}
	dropped := 0
	for _, i := range rep.Indices {
		if i.Action == ActionDropped {
			dropped++
		}
	}
	if k := rep.Kept(); k > 0 {
		a.metrics.retentionRuns.WithLabelValues("kept").Inc()
		a.fail(ctx, "retention", fmt.Errorf("kept %d index(es) that failed verification (see archiver retention)", k))
	} else {
		a.metrics.retentionRuns.WithLabelValues("ok").Inc()
	}
	a.logger.Info("retention pass", "horizon", rep.Horizon, "dropped", dropped, "kept", rep.Kept(), "boundary", rep.BoundaryAfter)
}
