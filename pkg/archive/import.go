package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// Importing history: events a deployment held before Spillway (its own PostgreSQL table, or
// NDJSON files), of any age, loaded into the archive's day partitions and made readable through
// the same API as everything else.
//
// Where imported days are served from. Search reads every instant below the cold boundary from
// PostgreSQL and everything at or above it from Elasticsearch. An import therefore accepts only
// events older than the import horizon — midnight (UTC) of now − (ingest.max_past_age + 24h),
// before which ingest accepts nothing, so no event can still arrive in Elasticsearch for those
// days — and, once its rows are committed and verified, moves the boundary to the end of its
// newest day. The boundary may pass days Elasticsearch still holds only when each of them is
// fully archived (nothing missing or pending, every shard's checkpoint at its end): from then on
// PostgreSQL serves those days with both their archived and their imported events, and retention
// later drops the indices as usual. Every instant is served by exactly one tier before and after.
// Events younger than the horizon belong to Elasticsearch: post them through ingest.
//
// An import is all or nothing for validity and resumable for work: a first pass validates every
// record with ingest's own decoder and rules (only the age limit differs) and stops, writing
// nothing, if any is invalid, listing each by position; a second pass writes batches, each with
// the source's position in one transaction; a third compares every day's imported identities
// with the archive by count and id digests.

// ImportSource is where an import reads its records. Each calls fn for every record from the
// skip-th (0-based), in an order that is the same on every call, with the record as the JSON
// object of an event (as posted to ingest) and whether it names an id.
type ImportSource interface {
	Name() string
	Count(ctx context.Context) (int64, error)
	Each(ctx context.Context, skip int64, fn func(pos int64, line []byte, hasID bool) error) error
}

// Importer is the archive's side of an import (*pgstore.Store).
type Importer interface {
	Import(ctx context.Context, source string) (pgstore.ImportRecord, bool, error)
	StartImport(ctx context.Context, source string, total int64) (pgstore.ImportRecord, error)
	ImportBatch(ctx context.Context, source string, from, to int64, rows []event.Event) (pgstore.Result, error)
	FinishImport(ctx context.Context, source string) error
	CountIdentities(ctx context.Context, day time.Time, ids []string) (n, hash int64, err error)
}

// ImportRequest configures one import.
type ImportRequest struct {
	Source ImportSource
	// Limits are ingest's (config.Ingest); their MaxPastAge sets the import horizon instead of
	// limiting ages.
	Limits event.Limits
	// Batch is the records per transaction (default archiver.batch_size).
	Batch int
	// Again imports a source that was imported (and finished) before, as a new import.
	Again    bool
	Progress Progress
}

// ImportDay is one UTC day of an import's verification.
type ImportDay struct {
	Day                   time.Time
	Source, SourceHash    int64 // the source's events of the day (identities, per batch)
	Archived, ArchiveHash int64 // those found in the archive
}

// OK says every imported identity of the day is in the archive.
func (d ImportDay) OK() bool { return d.Source == d.Archived && d.SourceHash == d.ArchiveHash }

// ImportReport is the outcome of an import.
type ImportReport struct {
	Source  string
	Horizon time.Time
	Records int64
	// Inserted and Existing count this run's rows new to the archive and those whose (id, day)
	// it held already; Resumed is the position an earlier, interrupted run had reached.
	Inserted, Existing, Resumed int64
	Days                        []ImportDay
	// BoundaryBefore and BoundaryAfter are the cold boundary around the import (zero: none).
	BoundaryBefore, BoundaryAfter time.Time
	Duration                      time.Duration
}

// ErrAlreadyImported means the source was imported before (ImportRequest.Again imports it again).
var ErrAlreadyImported = errors.New("already imported")

// ErrImportMismatch means imported events are not all in the archive after the import.
var ErrImportMismatch = errors.New("imported events missing from the archive")

// idOf gives an id-less record an id derived from the source and its position, so that every
// pass (and a resumed run) names it alike: import is idempotent where ingest would draw a new id.
func idOf(source string, pos int64) string {
	h := sha256.Sum256([]byte(source + "\x00" + strconv.FormatInt(pos, 10)))
	return "imp-" + hex.EncodeToString(h[:16])
}

// importHorizon is midnight (UTC) of now − (max_past_age + 24h): every imported event must be
// before it.
func importHorizon(now time.Time, lim event.Limits) time.Time {
	return now.UTC().Add(-lim.MaxPastAge - 24*time.Hour).Truncate(24 * time.Hour)
}

// decoded is one validated record.
type decoded struct {
	pos int64
	e   event.Event
}

// importReader validates a source's records with ingest's decoder, one record at a time, and
// collects the invalid ones by position.
type importReader struct {
	src     ImportSource
	lim     event.Limits
	horizon time.Time
	now     time.Time
	bad     []event.FieldError // the first event.MaxDetails problems, Index = position
	nbad    int64              // invalid records
}

// each calls fn with every valid record from skip on; once a record was invalid, fn is no
// longer called (the pass goes on, to list the other problems).
func (r *importReader) each(ctx context.Context, skip int64, fn func(decoded) error) error {
	lim := r.lim
	lim.MaxEvents = 1
	lim.MaxPastAge = r.now.Sub(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)) + time.Hour // any age: the horizon rules
	return r.src.Each(ctx, skip, func(pos int64, line []byte, hasID bool) error {
		if len(bytes.TrimSpace(line)) == 0 {
			line = []byte("{}") // a blank record: refused by position, like any other
		}
		evs, err := event.Decode(line, event.FormatJSON, r.now, lim)
		var ve *event.ValidationError
		switch {
		case errors.As(err, &ve):
			r.nbad++
			for _, d := range ve.Details {
				d.Index = int(pos)
				if len(r.bad) < event.MaxDetails {
					r.bad = append(r.bad, d)
				}
			}
			return nil
		case err != nil:
			return fmt.Errorf("record %d: %w", pos, err)
		case len(evs) != 1:
			r.nbad++
			if len(r.bad) < event.MaxDetails {
				r.bad = append(r.bad, event.FieldError{Index: int(pos), Message: "must be one event object"})
			}
			return nil
		}
		e := evs[0]
		if !e.Timestamp.Before(r.horizon) {
			r.nbad++
			if len(r.bad) < event.MaxDetails {
				r.bad = append(r.bad, event.FieldError{Index: int(pos), Field: "timestamp", Message: fmt.Sprintf(
					"is not before the import horizon %s (ingest.max_past_age + 24h ago): post younger events through ingest",
					r.horizon.Format(time.RFC3339))})
			}
			return nil
		}
		if r.nbad > 0 {
			return nil // validating on; nothing is written once a record was invalid
		}
		if !hasID {
			e.ID = idOf(r.src.Name(), pos)
		}
		return fn(decoded{pos: pos, e: e})
	})
}

// Import runs an import (see the comment at the top of this file). A validation failure is an
// *event.ValidationError whose details carry source positions (0-based record numbers).
func (a *Archiver) Import(ctx context.Context, db Importer, req ImportRequest) (*ImportReport, error) {
	start := time.Now()
	if a.boundary == nil || a.indices == nil {
		return nil, errors.New("import: the archiver was built without Indices and Boundary")
	}
	if req.Batch < 1 {
		req.Batch = a.cfg.BatchSize
	}
	if req.Progress == nil {
		req.Progress = nopProgress{}
	}
	name := req.Source.Name()
	now := a.now()
	rep := &ImportReport{Source: name, Horizon: importHorizon(now, req.Limits)}
	rec, exists, err := db.Import(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if exists && !rec.FinishedAt.IsZero() {
		if !req.Again {
			return rep, fmt.Errorf("import %s: %w on %s (%d rows new to the archive); --again imports it once more",
				name, ErrAlreadyImported, rec.FinishedAt.Format(time.RFC3339), rec.RowsInserted)
		}
		name += "#" + now.UTC().Format(time.RFC3339Nano)
		rep.Source = name
		exists = false
	}
	total, err := req.Source.Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	rep.Records = total

	// 1. Validate everything; write nothing if anything is invalid.
	val := &importReader{src: req.Source, lim: req.Limits, horizon: rep.Horizon, now: now}
	if err := val.each(ctx, 0, func(decoded) error { return nil }); err != nil {
		return rep, fmt.Errorf("import: validate: %w", err)
	}
	if val.nbad > 0 {
		msg := fmt.Sprintf("%d of %d records invalid; nothing was imported", val.nbad, total)
		if int64(len(val.bad)) < val.nbad {
			msg += fmt.Sprintf(" (the first %d problems are listed)", len(val.bad))
		}
		return rep, &event.ValidationError{Message: msg, Details: val.bad}
	}

	// 2. Write, resuming at the committed position.
	if !exists {
		if rec, err = db.StartImport(ctx, name, total); err != nil {
			return rep, fmt.Errorf("import: %w", err)
		}
	}
	rep.Resumed = rec.Position
	req.Progress.Start(total)
	req.Progress.Add(int(rec.Position))
	w := &importReader{src: req.Source, lim: req.Limits, horizon: rep.Horizon, now: now}
	pos := rec.Position
	var batch []event.Event
	var batchFrom int64
	commit := func(to int64) error {
		res, err := db.ImportBatch(ctx, name, batchFrom, to, batch)
		if err != nil {
			return err
		}
		rep.Inserted += res.Inserted
		rep.Existing += int64(len(batch)) - res.Inserted
		a.metrics.rows.WithLabelValues("import").Add(float64(res.Inserted))
		a.metrics.copyBytes.Add(float64(res.Bytes))
		req.Progress.Add(int(to - batchFrom))
		batch, batchFrom = batch[:0], to
		return nil
	}
	batchFrom = pos
	err = w.each(ctx, rec.Position, func(d decoded) error {
		batch = append(batch, d.e)
		pos = d.pos + 1
		if len(batch) >= req.Batch {
			return commit(pos)
		}
		return nil
	})
	if err == nil && w.nbad > 0 {
		err = errors.New("the source changed since it was validated")
	}
	if err == nil && len(batch) > 0 {
		err = commit(pos)
	}
	req.Progress.Finish()
	if err != nil {
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("import: %w", err)
	}

	// 3. Verify by day: every imported identity is archived. Identities are looked up per
	// batch of records; a source repeating an (id, day) counts it on both sides alike.
	days := map[time.Time]*ImportDay{}
	byDay := map[time.Time]map[string]bool{}
	pending := 0
	check := func() error {
		for day, set := range byDay {
			ids := make([]string, 0, len(set))
			for id := range set {
				ids = append(ids, id)
			}
			n, h, err := db.CountIdentities(ctx, day, ids)
			if err != nil {
				return err
			}
			d := days[day]
			if d == nil {
				d = &ImportDay{Day: day}
				days[day] = d
			}
			d.Source += int64(len(ids))
			for _, id := range ids {
				d.SourceHash += event.IDHash(id)
			}
			d.Archived += n
			d.ArchiveHash += h
		}
		clear(byDay)
		pending = 0
		return nil
	}
	vr := &importReader{src: req.Source, lim: req.Limits, horizon: rep.Horizon, now: now}
	err = vr.each(ctx, 0, func(d decoded) error {
		day := pgstore.Day(d.e.Timestamp)
		if byDay[day] == nil {
			byDay[day] = map[string]bool{}
		}
		byDay[day][d.e.ID] = true
		if pending++; pending >= 5000 {
			return check()
		}
		return nil
	})
	if err == nil {
		err = check()
	}
	if err != nil {
		return rep, fmt.Errorf("import: verify: %w", err)
	}
	var bad []string
	for _, d := range days {
		rep.Days = append(rep.Days, *d)
		if !d.OK() {
			bad = append(bad, d.Day.Format(time.DateOnly))
		}
	}
	sort.Slice(rep.Days, func(i, j int) bool { return rep.Days[i].Day.Before(rep.Days[j].Day) })
	if len(bad) > 0 {
		sort.Strings(bad)
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("import: %w on %s", ErrImportMismatch, strings.Join(bad, ", "))
	}

	// 4. Make the imported days readable: the boundary covers the newest one.
	if err := a.coverImported(ctx, rep); err != nil {
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("import: %w", err)
	}
	if err := db.FinishImport(ctx, name); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// coverImported moves the cold boundary to the end of the newest imported day, after checking
// that every day Elasticsearch holds below that is fully archived (nothing missing or pending,
// every shard at its end; PostgreSQL rows Elasticsearch lacks — the imported ones — are expected).
func (a *Archiver) coverImported(ctx context.Context, rep *ImportReport) error {
	prefix := a.es.Prefix()
	b, ok, err := a.boundary.ColdBoundary(ctx, prefix)
	if err != nil {
		return err
	}
	if ok {
		rep.BoundaryBefore, rep.BoundaryAfter = b, b
	}
	if len(rep.Days) == 0 {
		return nil
	}
	to := rep.Days[len(rep.Days)-1].Day.Add(24 * time.Hour)
	if !to.After(b) {
		return nil // already below the boundary: readable
	}
	indices, err := a.indices.Indices(ctx)
	if err != nil {
		return err
	}
	for _, idx := range indices {
		if idx.Day.Before(b) || !idx.Day.Before(to) {
			continue
		}
		reason, err := a.archivedBelow(ctx, idx)
		if err != nil {
			return err
		}
		if reason != "" {
			return fmt.Errorf("the imported days stay unreadable until %s is fully archived (%s): wait for the archiver or run archiver verify --repair over %s, then run the same import again",
				idx.Name, reason, idx.Day.Format(time.DateOnly))
		}
	}
	if rep.BoundaryAfter, err = a.boundary.AdvanceColdBoundary(ctx, prefix, to); err != nil {
		return err
	}
	a.metrics.boundary.Set(float64(rep.BoundaryAfter.Unix()))
	a.logger.Info("cold boundary moved over imported days", "prefix", prefix, "from", rep.BoundaryBefore, "to", rep.BoundaryAfter)
	return nil
}

// archivedBelow returns "" when every event of the index is in PostgreSQL (rows it lacks may be
// there: they are served once the boundary passes), or why not.
func (a *Archiver) archivedBelow(ctx context.Context, idx event.DailyIndex) (string, error) {
	switch {
	case !idx.Open:
		return "index is closed", nil
	case idx.Health == "red":
		return "index is red", nil
	}
	rep, err := a.Verify(ctx, VerifyRequest{From: idx.Day, To: idx.Day.Add(24 * time.Hour)})
	if err != nil {
		return "", err
	}
	var why []string
	if n := rep.Missing - rep.Repaired; n > 0 {
		why = append(why, fmt.Sprintf("%d events missing in PostgreSQL", n))
	}
	if rep.Pending > 0 {
		why = append(why, fmt.Sprintf("%d events not archived yet", rep.Pending))
	}
	if len(rep.Behind) > 0 {
		why = append(why, "archiver behind: "+strings.Join(rep.Behind, "; "))
	}
	return strings.Join(why, "; "), nil
}
